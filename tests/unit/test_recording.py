"""app.recording without a server: the journal, the two formats made from it, the directory and its
retention, and a recorder whose disk refuses a write (the kernel's own EFBIG, from RLIMIT_FSIZE)."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from app.recording import wanted
from app.recording.formats import Asciicast, Pipes, render
from app.recording.journal import entry, file_chunks
from app.recording.journal import events as journal_events
from app.recording.recorder import Recorder
from app.recording.remote import CHUNK_BYTES, RECORDING_OPS, remote_chunks
from app.recording.store import RECORDING, Store
from tests.server import ROOT


def events(lines: bytes) -> list[Any]:
    return [json.loads(line) for line in lines.splitlines()]


def test_asciicast_header_and_events() -> None:
    cast = Asciicast()
    header = json.loads(cast.header(1700000000, "bash -l", (30, 100), ["stdout"]))
    assert header["version"] == 2 and header["width"] == 100 and header["height"] == 30
    assert header["timestamp"] == 1700000000 and header["command"] == "bash -l"
    assert events(cast.resized(1.5, 40, 120)) == [[1.5, "r", "120x40"]]
    assert events(cast.input(2.0, b"ls\r", 0)) == [[2.0, "i", "ls\r"]]
    assert cast.exited(3.0, {"code": 0}) == b""


def test_asciicast_keeps_a_character_cut_between_reads() -> None:
    cast = Asciicast()
    text = "żółć ✓"
    data = text.encode()
    first = cast.output(0.1, "stdout", data[:1], 0)
    assert first == b""  # half a character: nothing to write yet
    rest = events(cast.output(0.2, "stdout", data[1:], 1))
    assert rest == [[0.2, "o", text]]


def test_asciicast_writes_what_is_not_utf8_as_replacement_characters() -> None:
    cast = Asciicast()
    assert events(cast.output(0.0, "stdout", b"a\xffb", 0)) == [[0.0, "o", "a\ufffdb"]]
    assert cast.output(0.1, "stdout", b"\xc5", 3) == b""
    assert events(cast.end_of_stream(0.2, "stdout")) == [[0.2, "o", "\ufffd"]]


def test_pipes_keep_every_byte() -> None:
    pipes = Pipes()
    header = json.loads(pipes.header(1700000000, "cat", None, ["stdout", "stderr"]))
    assert header == {
        "format": "procwire-pipes",
        "version": 1,
        "timestamp": 1700000000,
        "command": "cat",
        "streams": ["stdout", "stderr"],
    }
    assert events(pipes.output(0.5, "stderr", "é".encode(), 7)) == [
        {"time": 0.5, "stream": "stderr", "offset": 7, "data": "é"}
    ]
    for binary in (b"\x00\xff", b"zeros\x00\x00"):  # not UTF-8; UTF-8 but binary
        event = events(pipes.output(0.6, "stdout", binary, 0))[0]
        assert event["encoding"] == "base64" and base64.b64decode(event["data"]) == binary
    assert events(pipes.input(0.7, b"x", 3)) == [{"time": 0.7, "stream": "stdin", "offset": 3, "data": "x"}]
    assert events(pipes.end_of_stream(0.8, "stdout")) == [{"time": 0.8, "stream": "stdout", "eof": True}]
    assert events(pipes.exited(0.9, {"code": 1})) == [{"time": 0.9, "exit": {"code": 1}}]
    assert pipes.resized(1.0, 10, 10) == b""


def test_what_a_start_and_a_policy_ask() -> None:
    assert wanted(None, False, False) == (False, False)
    assert wanted(False, False, False) == (False, False)
    assert wanted(True, False, False) == (True, False)
    assert wanted(False, True, False) == (True, False)
    assert wanted(None, False, True) == (True, True)

    class Asked:
        input = True

    assert wanted(Asked(), False, False) == (True, True)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(str(tmp_path / "recordings"), max_age=0, max_bytes=0)


def recorder(store: Store, proc: int = 1, pty: tuple[int, int] | None = None) -> Recorder:
    return Recorder(store, proc, "alice", "echo hi", pty, inputs=False)


def test_files_are_the_servers_alone(store: Store) -> None:
    made = recorder(store)
    assert stat.S_IMODE(os.stat(store.directory).st_mode) == 0o700
    for path in (store.path(made.id), os.path.join(store.directory, made.id + ".json")):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(FileExistsError):
        store.open(made.id)  # never an existing file
    made.discard()
    assert os.listdir(store.directory) == []


def test_listing_reads_the_metadata_and_refuses_other_names(store: Store) -> None:
    made = recorder(store, proc=7)
    [meta] = store.all()
    assert meta["id"] == made.id and meta["proc"] == 7 and meta["owner"] == "alice" and meta["state"] == RECORDING
    assert meta["bytes"] == 0
    assert store.read_meta("../" + made.id) is None
    made.discard()


def finished(store: Store, age: float, size: int, proc: int) -> str:
    """A recording that ended ``age`` seconds ago, of ``size`` bytes."""
    made = recorder(store, proc=proc)
    with open(store.path(made.id), "ab") as file:
        file.write(b"x" * size)
    made.meta.update(state="complete", ended_at=time.time() - age)
    store.write_meta(made.meta)
    return made.id


def test_retention_by_age_then_by_size_never_a_live_recording(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "r"), max_age=3600, max_bytes=250)
    old = finished(store, 7200, 10, 1)
    oldest_kept, newer = finished(store, 60, 100, 2), finished(store, 30, 100, 3)
    live = recorder(store, proc=4)
    with open(store.path(live.id), "ab") as file:
        file.write(b"y" * 100)
    assert store.sweep() == [old, oldest_kept]  # 310 bytes left after the old one: the oldest goes too
    assert [meta["id"] for meta in store.all()] == [newer, live.id]


def test_a_recording_whose_worker_is_gone_is_interrupted(store: Store) -> None:
    made = recorder(store)
    made.meta["writer"] = 2**22 + 1  # above pid_max's default: no such process
    store.write_meta(made.meta)
    assert store.read_meta(made.id)["state"] == "interrupted"  # type: ignore[index]


SMALL_FILES = 4096
# Run in a child process of its own: a lowered RLIMIT_FSIZE would also refuse pytest's own writes
# (its report, when stdout is a file) while it lasts.
REFUSED_WRITES = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the kernel then refuses with EFBIG instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
from app.recording.store import Store
from tests.unit.test_recording import FakeSource, recorder
made = recorder(Store(sys.argv[1], max_age=0, max_bytes=0))
for offset in range(0, 10_000, 1000):
    made.output(FakeSource(), "stdout", b"a" * 1000, offset)
made.exited(FakeSource())
print(made.id)
"""


class FakeSource:
    """The process as a sink sees it (the recorder's output side is only called with it)."""

    id = 1
    status: dict[str, Any] | None = {"code": 0}


def test_a_refused_write_stops_the_recording_and_keeps_whole_events(store: Store) -> None:
    """Files of the recording process may not grow past 4 KiB: the kernel's own EFBIG."""
    child = subprocess.run(
        [sys.executable, "-c", REFUSED_WRITES, store.directory, str(SMALL_FILES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    made_id = child.stdout.strip()
    data = Path(store.path(made_id)).read_bytes()
    kept = list(journal_events([data]))
    assert 0 < len(data) <= SMALL_FILES and kept
    assert b"".join(b"".join(entry(event, chunk)) for event, chunk in kept) == data  # whole events, nothing after
    assert all(chunk == b"a" * 1000 for _event, chunk in kept)
    meta = store.read_meta(made_id)
    assert meta is not None and meta["state"] == "failed" and "File too large" in meta["error"]


def test_a_file_crosses_the_cluster_in_chunks_and_lists_per_viewer(store: Store) -> None:
    """What a node answers another (app.recording.remote), called as its bus server calls it."""
    made = recorder(store, proc=3)
    payload = os.urandom(3 * CHUNK_BYTES + 17)
    with open(store.path(made.id), "ab") as file:
        file.write(payload)

    def ask(params: dict[str, Any]) -> Any:
        return RECORDING_OPS["recording_chunk"](store, json.loads(json.dumps(params)))

    assert b"".join(remote_chunks(ask, made.id)) == payload
    assert [meta["id"] for meta in RECORDING_OPS["recordings"](store, {"name": "alice", "admin": False})] == [made.id]
    assert RECORDING_OPS["recordings"](store, {"name": "bob", "admin": False}) == []
    assert len(RECORDING_OPS["recordings"](store, {"name": "bob", "admin": True})) == 1


JOURNAL = [
    ({"t": 0.0, "stream": "stdout", "offset": 0}, b"line\n\x00\xff{}\n"),
    ({"t": 0.1, "resize": [30, 100]}, b""),
    ({"t": 0.2, "stream": "stdin", "offset": 0}, b"typed\n"),
    ({"t": 0.3, "stream": "stdout", "eof": True}, b""),
    ({"t": 0.4, "exit": {"code": 0}}, b""),
]


def test_the_journal_reads_back_whatever_the_reads_cut() -> None:
    data = b"".join(b"".join(entry(event, chunk)) for event, chunk in JOURNAL)
    for cut in range(len(data) + 1):
        assert list(journal_events([data[:cut], data[cut:]])) == JOURNAL
    assert list(journal_events(data[at : at + 1] for at in range(len(data)))) == JOURNAL


def test_a_journal_cut_short_is_read_to_its_last_whole_event() -> None:
    data = b"".join(b"".join(entry(event, chunk)) for event, chunk in JOURNAL)
    first = len(b"".join(entry(*JOURNAL[0])))
    for cut in range(first, first + len(b"".join(entry(*JOURNAL[1])))):
        assert list(journal_events([data[:cut]])) == JOURNAL[:1]


def test_a_recorders_journal_is_served_as_its_format(store: Store) -> None:
    made = recorder(store, pty=(24, 80))
    made.meta["streams"] = ["stdout"]
    made.output(FakeSource(), "stdout", "ż".encode()[:1], 0)
    made.output(FakeSource(), "stdout", "ż".encode()[1:] + b"!", 1)
    made.resized(30, 100)
    made.exited(FakeSource())
    header, *cast = [
        json.loads(line)
        for line in b"".join(render(made.meta, journal_events(file_chunks(store.path(made.id))))).splitlines()
    ]
    assert header["width"] == 80 and header["height"] == 24 and header["command"] == "echo hi"
    assert [event[1:] for event in cast] == [["o", "ż!"], ["r", "100x30"]]
    assert cast[0][0] <= cast[1][0]
