"""Session recording against the real server (docs/security.md#recording): each recording replayed
and compared byte for byte with what the client received, through a kill and a graceful worker
stop; who may list and fetch which; retention; a full disk (a real one: a tiny tmpfs)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shlex
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websocket import WebSocketException

from tests.client import RpcClient, chunk_bytes
from tests.recordings import api, asciicast, fetched, listed, pipes, stream_bytes, terminal_output
from tests.server import ROOT, Server, wait_until
from tests.test_cli_support import procwire

LOOP = "i=0; while :; do echo line $i; i=$((i+1)); sleep 0.005; done"


def read_until(client: RpcClient, proc: int, marker: bytes) -> bytes:
    """stdout of ``proc`` until ``marker`` appears (other messages stay queued)."""
    received = bytearray()
    kept: list[Any] = []
    try:
        while marker not in received:
            message = client.next_message()
            params = message.get("params", {})
            if message.get("method") == "output" and params.get("proc") == proc:
                received += chunk_bytes(params)
            else:
                assert not (message.get("method") == "exit" and params.get("proc") == proc), message
                kept.append(message)
    finally:
        client.pending.extendleft(reversed(kept))
    return bytes(received)


def on_disk(server: Server, recording: str, extension: str) -> Path:
    return Path(server.state_dir) / "recordings" / f"{recording}{extension}"


def exported(server: Server, recording: str) -> bytes:
    """The recording made from its files with no server (``python -m app.recording.export``)."""
    argv = [sys.executable, "-m", "app.recording.export", str(on_disk(server, recording, ".rec"))]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_pipes_are_recorded_byte_for_byte_with_the_input(server: Server, rpc: RpcClient) -> None:
    script = "printf 'a\\377b'; printf 'oops' >&2; cat; printf 'ż'"
    started = rpc.call("start", argv=["sh", "-c", script], record={"input": True})
    proc, recording = started["proc"], started["recording"]
    rpc.call("write", proc=proc, data="hello\n")
    rpc.call("close_stdin", proc=proc)
    got = rpc.collect(proc)
    data = fetched(server, server.token, recording)
    header, events = pipes(data)
    assert header["command"] == shlex.join(["sh", "-c", script])
    assert header["streams"] == ["stdout", "stderr"]
    assert stream_bytes(events, "stdout") == bytes(got.stdout) == b"a\xffbhello\n\xc5\xbc"
    assert stream_bytes(events, "stderr") == bytes(got.stderr) == b"oops"
    assert stream_bytes(events, "stdin") == b"hello\n"
    assert {event["stream"] for event in events if event.get("eof")} == {"stdout", "stderr"}
    assert events[-1]["exit"] == got.exit
    meta = listed(server, server.token)[recording]
    assert meta["state"] == "complete" and meta["proc"] == proc and meta["format"] == "pipes"
    assert meta["exit"] == got.exit and meta["bytes"] == on_disk(server, recording, ".rec").stat().st_size
    assert meta["input"] is True and rpc.call("find", pid=started["pid"])["recording"] == recording
    assert exported(server, recording) == data  # the same, made from the files alone
    for path in (on_disk(server, recording, ".rec"), on_disk(server, recording, ".json")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == os.getuid()


def test_megabytes_of_binary_output_are_recorded_whole(server: Server, rpc: RpcClient) -> None:
    got = rpc.run_to_exit(["head", "-c", "3000000", "/dev/urandom"], binary=True, record=True)
    recording = next(meta["id"] for meta in listed(server, server.token).values() if meta["proc"] == got.exit["proc"])
    _header, events = pipes(fetched(server, server.token, recording))
    recorded = stream_bytes(events, "stdout")
    assert len(recorded) == 3_000_000 and hashlib.sha256(recorded).digest() == hashlib.sha256(got.stdout).digest()
    assert stream_bytes(events, "stdin") == b""  # input not asked for


def test_a_terminal_is_recorded_as_asciicast_v2(server: Server, rpc: RpcClient) -> None:
    script = "read line; echo \"got $line\"; i=0; while [ $i -lt 400 ]; do printf 'żółć ✓ %s\\n' $i; i=$((i+1)); done"
    started = rpc.call(
        "start", argv=["sh", "-c", script], pty={"rows": 30, "cols": 100}, record={"input": True}, command="demo"
    )
    proc = started["proc"]
    rpc.call("resize", proc=proc, rows=40, cols=120)
    rpc.call("write", proc=proc, data="hi\r")
    got = rpc.collect(proc)
    header, events = asciicast(fetched(server, server.token, started["recording"]))
    assert (header["width"], header["height"], header["command"]) == (100, 30, "demo")
    assert ["r", "120x40"] in [event[1:] for event in events]
    assert terminal_output(events, "i") == b"hi\r"
    assert terminal_output(events) == bytes(got.stdout)
    assert "żółć ✓ 399" in got.stdout.decode()


def test_a_process_killed_mid_recording_leaves_a_whole_recording(server: Server, rpc: RpcClient) -> None:
    started = rpc.call("start", argv=["sh", "-c", LOOP], pty={"rows": 24, "cols": 80}, record=True)
    proc = started["proc"]
    first = read_until(rpc, proc, b"line 100\r\n")
    rpc.call("kill", proc=proc)
    rest = rpc.collect(proc)
    assert rest.exit is not None and rest.exit["signal"] == "SIGKILL"
    _header, events = asciicast(fetched(server, server.token, started["recording"]))
    assert terminal_output(events) == first + bytes(rest.stdout)
    meta = listed(server, server.token)[started["recording"]]
    assert meta["state"] == "complete" and meta["exit"]["signal"] == "SIGKILL"


def test_a_worker_stopped_mid_recording_closes_its_recordings(tmp_path: Path) -> None:
    """SIGTERM to gunicorn: the worker stops its processes (a kept one too) and closes their recordings."""
    server = Server(env={"PROCWIRE_KILL_GRACE": "1"}).start()
    client = RpcClient(server.url, server.token)
    try:
        kept = client.call("start", argv=["sh", "-c", LOOP], on_disconnect="keep", record=True)
        own = client.call("start", argv=["sh", "-c", LOOP], record=True)
        received = {kept["proc"]: read_until(client, kept["proc"], b"line 50\n")}
        received[own["proc"]] = read_until(client, own["proc"], b"line 50\n")
        server.stop()
        try:  # what reached the client before its connection closed
            while True:
                message = client.next_message()
                params = message.get("params", {})
                if message.get("method") == "output":
                    received[params["proc"]] += chunk_bytes(params)
        except (WebSocketException, OSError, ValueError):  # ValueError: the Close frame's empty text
            pass
    finally:
        client.close()
        server.stop()
    for started in (kept, own):
        meta = json.loads(on_disk(server, started["recording"], ".json").read_bytes())
        assert meta["state"] == "complete" and meta["exit"]["signal"] in ("SIGTERM", "SIGKILL"), meta
        _header, kept = pipes(exported(server, started["recording"]))
        recorded = stream_bytes(kept, "stdout")
        assert recorded.startswith(received[started["proc"]]) and len(recorded) >= len(received[started["proc"]])
        assert kept[-1]["exit"] == meta["exit"]


@pytest.fixture(scope="module")
def policed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """alice must be recorded with her input; bob may ask; the admin sees everything."""
    base = tmp_path_factory.mktemp("recording-policy")
    lines = '[policies.user]\nallow = ["/usr/bin/*", "/bin/*"]\ncwd_roots = ["/"]\n'
    for name, policy in (("alice", "record_input = true"), ("bob", "")):
        digest = hashlib.sha256(f"{name}-token".encode()).hexdigest()
        lines += f'\n[[tokens]]\nname = "{name}"\nrole = "user"\nsha256 = "{digest}"\n[tokens.policy]\n{policy}\n'
    (base / "procwire.toml").write_text(lines)
    env = {"PROCWIRE_CONFIG": str(base / "procwire.toml"), "PROCWIRE_AUDIT_LOG": str(base / "audit.log")}
    server = Server(env=env).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_policy_requires_recording_and_each_owner_sees_their_own(policed: Server) -> None:
    with RpcClient(policed.url, "alice-token") as alice, RpcClient(policed.url, "bob-token") as bob:
        started = alice.call("start", argv=["/bin/cat"])  # not asked: the policy records it, input included
        alice.call("write", proc=started["proc"], data="typed\n")
        alice.call("close_stdin", proc=started["proc"])
        alice.collect(started["proc"])
        unrecorded = bob.call("start", argv=["/bin/true"])
        assert "recording" not in unrecorded
        bob.collect(unrecorded["proc"])
        bob_run = bob.call("run", argv=["/bin/echo", "bob's"], record=True)
    alices, bobs = listed(policed, "alice-token"), listed(policed, "bob-token")
    assert list(alices) == [started["recording"]] and alices[started["recording"]]["input"] is True
    _header, events = pipes(fetched(policed, "alice-token", started["recording"]))
    assert stream_bytes(events, "stdin") == stream_bytes(events, "stdout") == b"typed\n"
    [bobs_id] = bobs
    assert bobs[bobs_id]["owner"] == "bob" and bob_run["stdout"] == "bob's\n"
    assert api(policed, "bob-token", f"/api/recordings/{started['recording']}")[0] == 404
    assert api(policed, "bob-token", "/api/recordings/..%2F..%2Fetc%2Fpasswd")[0] == 404
    assert api(policed, "bob-token", "/api/clients")[0] == 403  # the rest of /api/ is still for admins
    assert set(listed(policed, policed.token)) == {started["recording"], bobs_id}
    audit = [json.loads(line) for line in Path(policed.env["PROCWIRE_AUDIT_LOG"]).read_text().splitlines()]
    assert {"recording", "recording_fetch"} <= {line["event"] for line in audit}


def test_retention_deletes_the_oldest_beyond_the_total_size(tmp_path: Path) -> None:
    env = {"PROCWIRE_RECORDINGS_DIR": str(tmp_path / "rec"), "PROCWIRE_RECORDINGS_MAX_BYTES": "30000"}
    server = Server(env=env).start()
    try:
        with RpcClient(server.url, server.token) as client:
            ids = []
            for _ in range(3):
                started = client.call("start", argv=["head", "-c", "12000", "/dev/urandom"], record=True)
                client.collect(started["proc"])
                ids.append(started["recording"])
            # A sweep runs at most every 2 s per worker: the next recording's end triggers one.
            assert wait_until(lambda: _swept_after_one_more(server, client), timeout=15)
            left = listed(server, server.token)
            assert ids[0] not in left and sum(meta["bytes"] for meta in left.values()) <= 30000
    finally:
        server.stop()


def _swept_after_one_more(server: Server, client: RpcClient) -> bool:
    started = client.call("start", argv=["true"], record=True)
    client.collect(started["proc"])
    return wait_until(lambda: sum(meta["bytes"] for meta in listed(server, server.token).values()) <= 30000, 1)


@pytest.fixture
def tiny_disk() -> Iterator[Path]:
    """A real 64 KiB filesystem (tmpfs) that fills up: mounting it needs root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    mount_point = Path(tempfile.mkdtemp(prefix="procwire-tiny-disk-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount_point)], check=False)
    if done.returncode != 0:
        mount_point.rmdir()
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True, timeout=30)
        mount_point.rmdir()


def test_a_full_disk_stops_the_recording_not_the_process(tmp_path: Path, tiny_disk: Path) -> None:
    audit_log = tmp_path / "audit.log"
    env = {"PROCWIRE_RECORDINGS_DIR": str(tiny_disk), "PROCWIRE_AUDIT_LOG": str(audit_log)}
    server = Server(env=env).start()
    try:
        with RpcClient(server.url, server.token) as client:
            started = client.call("start", argv=["sh", "-c", "seq 1 100000"], record=True)
            got = client.collect(started["proc"])
            notices = [message["params"] for message in client.pending if message.get("method") == "recording"]
            assert got.exit is not None and got.exit["code"] == 0
            assert got.stdout == b"".join(b"%d\n" % n for n in range(1, 100001))  # every byte, to the client
            assert notices and notices[0]["state"] == "failed" and notices[0]["recording"] == started["recording"]
            meta = listed(server, server.token)[started["recording"]]
            assert meta["state"] == "failed" and "No space left" in meta["error"]
            _header, events = pipes(fetched(server, server.token, started["recording"]))  # whole lines
            assert got.stdout.startswith(stream_bytes(events, "stdout"))
            failed = [json.loads(line) for line in audit_log.read_text().splitlines() if "recording_failed" in line]
            assert failed and failed[0]["errno"] == 28 and failed[0]["proc"] == started["proc"]
            fill(tiny_disk / "filler")  # what the cut-back freed too: no room even to begin a recording
            refused = client.error_of("start", argv=["true"], record=True)
            assert refused.code == -32007 and "cannot record" in refused.message
            assert client.call("run", argv=["echo", "still serving"])["stdout"] == "still serving\n"
    finally:
        server.stop()


def test_the_cli_records_lists_and_fetches(server: Server, tmp_path: Path) -> None:
    done = procwire(server, "run", "--record=input", "--", "sh", "-c", "cat; echo cli-recorded", input=b"typed\n")
    assert done.returncode == 0 and done.stdout == b"typed\ncli-recorded\n", done.stderr
    listing = procwire(server, "recordings", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    mine = [meta for meta in json.loads(listing.stdout) if meta["command"] == "sh -c 'cat; echo cli-recorded'"]
    assert len(mine) == 1 and mine[0]["input"] is True
    table = procwire(server, "recordings")
    assert mine[0]["id"] in table.stdout.decode()
    target = tmp_path / "session.jsonl"
    assert procwire(server, "recordings", "get", mine[0]["id"], "-o", str(target)).returncode == 0
    _header, events = pipes(target.read_bytes())
    assert stream_bytes(events, "stdin") == b"typed\n" and stream_bytes(events, "stdout") == done.stdout
    assert procwire(server, "recordings", "get", mine[0]["id"]).stdout == target.read_bytes()
    missing = procwire(server, "recordings", "get", "20261202T000000Z-1-00000000")
    assert missing.returncode == 1 and b"HTTP 404" in missing.stderr


def fill(path: Path) -> None:
    """Write to ``path`` until the filesystem is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, bytes(4096)):
            pass
    except OSError as error:
        assert error.errno == errno.ENOSPC, error
    finally:
        os.close(fd)
