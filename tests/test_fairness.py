"""Interactive output goes ahead of bulk output (issue 11), checked by order, not by time;
and no byte of either is lost or reordered on the way.

The pumps run in a gevent-patched child like the worker, on real pipes of
real processes: ``BULK`` children each print a long ``seq`` as fast as they
can, so that every turn of the hub has bulk chunks ready, while a typist
greenlet writes one byte at a time into a pipe of its own (a keystroke's
echo) and notes in the same log the moment it wrote.  The log is the order
in which chunks reached the pumps' owner, which is the order in which the
worker would send them.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from app.processes.turns import BULK_CHUNK
from tests.client import BINARY_HEADER, RpcClient
from tests.server import ROOT

BULK = 24
LINES = 5_000_000
KEYS = 40
MOST_BULK_CHUNKS_BEFORE_AN_ECHO = 2

SCRIPT = """
from gevent import monkey; monkey.patch_all()
import hashlib, json, os, subprocess, sys
import gevent
from app.processes.forkexec import close_fd  # at once: gevent's os.close waits for a busy hub
from app.processes.pump import Pump

bulk, lines, keys = (int(arg) for arg in sys.argv[1:])
log = []  # (what, stream, bytes): a chunk published, a keystroke written, an end of file; in the hub's order
received = {}

class Owner:
    def publish(self, stream, data):
        log.append(("chunk", stream, len(data)))
        received.setdefault(stream, hashlib.sha256()).update(data)
    def stream_ended(self, stream):
        log.append(("end", stream, 0))
    def pump_done(self):
        pass

def pipe():
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    return read_end, write_end

children, pumps = [], []
for index in range(bulk):
    read_end, write_end = pipe()
    children.append(subprocess.Popen(["seq", "1", str(lines)], stdout=write_end))
    close_fd(write_end)
    pumps.append(Pump(Owner(), read_end, f"bulk{index}"))
keys_read, keys_write = pipe()
pumps.append(Pump(Owner(), keys_read, "keys"))
for pump in pumps:
    pump.start()

def typist():
    gevent.sleep(0.05)  # every bulk stream is flowing
    for _ in range(keys):
        log.append(("wrote", "keys", 1))
        os.write(keys_write, b"k")
        gevent.sleep(0.005)
    close_fd(keys_write)

gevent.joinall([gevent.spawn(typist), *[pump.greenlet for pump in pumps]], timeout=60)
for child in children:
    child.wait(timeout=10)
print(json.dumps({"log": log, "digests": {name: h.hexdigest() for name, h in received.items()},
                  "pumps_done": sum(pump.done for pump in pumps)}))
"""


@pytest.fixture(scope="module")
def pumped() -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(BULK), str(LINES), str(KEYS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def bulk_chunks_before_each_echo(log: list[tuple[str, str, int]]) -> list[int]:
    """For each keystroke written while every bulk stream still ran: the bulk chunks sent before its echo."""
    counts: list[int] = []
    ended = 0
    waiting: int | None = None
    for kind, stream, _ in log:
        if kind == "end":
            ended += 1
        elif kind == "wrote" and ended == 0:
            waiting = 0
        elif kind == "chunk" and stream == "keys" and waiting is not None:
            counts.append(waiting)
            waiting = None
        elif kind == "chunk" and waiting is not None:
            waiting += 1
    return counts


def test_the_bulk_streams_kept_the_hub_busy(pumped: dict) -> None:
    """Most bulk chunks filled the pump's read: the children wrote faster than the worker read."""
    sizes = [size for kind, stream, size in pumped["log"] if kind == "chunk" and stream != "keys"]
    assert sum(size >= BULK_CHUNK for size in sizes) > 0.8 * len(sizes)


def test_a_keystroke_echo_goes_ahead_of_bulk_chunks(pumped: dict) -> None:
    counts = bulk_chunks_before_each_echo(pumped["log"])
    assert len(counts) >= KEYS // 2, f"the bulk streams ended before the typing: {len(counts)} keys measured"
    assert max(counts) <= MOST_BULK_CHUNKS_BEFORE_AN_ECHO, counts


def test_every_stream_arrives_complete_and_in_order(pumped: dict) -> None:
    expected = hashlib.sha256("".join(f"{n}\n" for n in range(1, LINES + 1)).encode()).hexdigest()
    assert pumped["pumps_done"] == BULK + 1
    for index in range(BULK):
        assert pumped["digests"][f"bulk{index}"] == expected
    assert pumped["digests"]["keys"] == hashlib.sha256(b"k" * KEYS).hexdigest()
    ends = [stream for kind, stream, _ in pumped["log"] if kind == "end"]
    assert sorted(ends) == sorted([f"bulk{index}" for index in range(BULK)] + ["keys"])


SERVER_BULK = 12
SERVER_LINES = 300_000
ECHOES = 20


def test_through_the_server_echoes_and_bulk_streams_all_arrive_whole(rpc: RpcClient) -> None:
    """One connection, a real worker: bulk streams in binary frames and a ``cat`` echoing lines
    written while they stream; every byte of each arrives, in order."""
    bulk = [
        rpc.call("start", argv=["seq", "1", str(SERVER_LINES)], stdin="null", binary=True)["proc"]
        for _ in range(SERVER_BULK)
    ]
    cat = rpc.call("start", argv=["cat"], binary=True)["proc"]
    received: dict[int, bytearray] = {proc: bytearray() for proc in [*bulk, cat]}
    exits: dict[int, dict] = {}

    def read_one() -> None:
        message = rpc.next_message()
        if isinstance(message, bytes):
            _, proc = BINARY_HEADER.unpack_from(message)
            received[proc] += message[BINARY_HEADER.size :]
        elif message.get("method") == "exit":
            exits[message["params"]["proc"]] = message["params"]

    lines = [f"keystroke {index}\n".encode() for index in range(ECHOES)]
    for count, line in enumerate(lines, 1):
        rpc.notify("write", {"proc": cat, "data": line.decode()})
        while len(received[cat]) < sum(map(len, lines[:count])):
            read_one()
    rpc.call("close_stdin", proc=cat)
    while len(exits) < SERVER_BULK + 1:
        read_one()
    expected = "".join(f"{n}\n" for n in range(1, SERVER_LINES + 1)).encode()
    assert all(received[proc] == expected for proc in bulk)
    assert received[cat] == b"".join(lines)
    assert all(exits[proc]["code"] == 0 for proc in exits)


FLOOD_SECONDS = 1.0
LEAST_BULK_CHUNKS_DURING_THE_FLOOD = 5  # one a STARVATION_LIMIT (50 ms): about 20

FLOOD = """
from gevent import monkey; monkey.patch_all()
import json, os, subprocess, sys
import gevent
from app.processes.forkexec import close_fd
from app.processes.pump import Pump

seconds = float(sys.argv[1])
log = []

class Owner:
    def publish(self, stream, data):
        log.append("bulk")
    def stream_ended(self, stream):
        pass
    def pump_done(self):
        pass

read_end, write_end = os.pipe()
os.set_blocking(read_end, False)
child = subprocess.Popen(["seq", "1", "50000000"], stdout=write_end)
close_fd(write_end)
pump = Pump(Owner(), read_end, "stdout")
pump.start()
gevent.sleep(0.1)  # the stream is flowing, in bulk turns

busy_read, busy_write = os.pipe()
os.write(busy_write, b"x")  # readable for good, never read: a watcher pending at every turn of the hub
busy = gevent.get_hub().loop.io(busy_read, 1)
busy.start(lambda: None)
log.append("flood")
gevent.sleep(seconds)
log.append("flood over")
busy.stop()
child.kill()
gevent.joinall([pump.greenlet], timeout=30)
child.wait(timeout=10)
print(json.dumps(log))
"""


def test_a_hub_that_is_never_idle_still_gives_bulk_output_turns() -> None:
    """A watcher pending at every turn of the hub (a flood of small work) leaves no
    idle moment; the starvation timer still lets the bulk stream go on."""
    completed = subprocess.run(
        [sys.executable, "-c", FLOOD, str(FLOOD_SECONDS)], cwd=ROOT, capture_output=True, text=True, timeout=90
    )
    assert completed.returncode == 0, completed.stderr
    log = json.loads(completed.stdout)
    before = log[: log.index("flood")].count("bulk")
    during = log[log.index("flood") : log.index("flood over")].count("bulk")
    assert before > during * 2  # the flood took the hub: far fewer turns than when it was free...
    assert during >= LEAST_BULK_CHUNKS_DURING_THE_FLOOD, during  # ...but never none
