"""Faults, against the real server: after each one nothing is left behind.

Every test tracks the pids it caused (the leader from ``start``, its
background children through ``echo $!``) and, once the fault has happened,
checks that:

* none of those pids exists any more (a zombie counts as existing);
* the worker has no child left and no child of the worker or the master is a zombie;
* the worker holds no more descriptors than before, give or take ``FD_SLACK``;
* the service still answers ``ping`` on a new connection.

Tests that kill or restart workers run their own server.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import websocket

from tests.client import RpcClient, chunk_bytes, read_close
from tests.server import Server, children_of, pid_exists, wait_until

KILL_GRACE = 0.5
DRAIN_TIMEOUT = 0.5
SETTLE = 10.0  # the longest any clean-up may take before it counts as a leak
FD_SLACK = 3  # descriptors a worker may legitimately keep open between two moments (log files, caches)

FAULT_ENV = {"PROCWIRE_KILL_GRACE": str(KILL_GRACE), "PROCWIRE_DRAIN_TIMEOUT": str(DRAIN_TIMEOUT)}

pytestmark = pytest.mark.timeout(90)


# -- helpers ----------------------------------------------------------------------


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def state_of(pid: int) -> str | None:
    """The one-letter state from /proc/<pid>/stat (``Z`` for a zombie), None once gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2]  # the command name may hold spaces and parentheses


def zombies_among(pids: list[int]) -> list[int]:
    return [pid for pid in pids if state_of(pid) == "Z"]


def only_worker(server: Server, timeout: float = SETTLE) -> int:
    """The single worker, once the master has exactly one child (old workers gone)."""
    assert wait_until(lambda: len(server.worker_pids()) == 1, timeout), server.worker_pids()
    return server.worker_pids()[0]


def warm_up(server: Server) -> None:
    """First use allocates descriptors for good (the reaper, the hub's watchers): do it before counting."""
    with RpcClient(server.url, server.token) as client:
        assert client.run_to_exit(["sh", "-c", "echo warm; true"]).stdout == b"warm\n"


def ping(server: Server) -> None:
    with RpcClient(server.url, server.token, timeout=10) as client:
        assert "time" in client.call("ping")


def read_lines(
    client: RpcClient, proc: int, count: int, stream: str = "stdout", timeout: float = SETTLE
) -> list[bytes]:
    """``proc``'s first ``count`` lines on ``stream`` (the rest of the chunk is dropped), bounded in time."""
    seen = b""
    deadline = time.monotonic() + SETTLE
    while seen.count(b"\n") < count:
        assert time.monotonic() < deadline, f"only {seen[:200]!r} from process {proc}"
        message = client.next_message()
        if isinstance(message, dict) and message.get("method") == "output":
            params = message["params"]
            if params["proc"] == proc and params["stream"] == stream:
                seen += chunk_bytes(params)
    return seen.split(b"\n")[:count]


def start_tree(
    client: RpcClient, script: str, children: int, stream: str = "stdout", **params: object
) -> tuple[int, list[int]]:
    """Start ``sh -c script``, whose first ``children`` lines on ``stream`` are the pids of
    its background children (``echo $!``); its proc and every pid of the tree."""
    started = client.call("start", argv=["sh", "-c", script], **params)
    lines = read_lines(client, started["proc"], children, stream)
    pids = [started["pid"], *(int(line) for line in lines)]
    assert all(pid_exists(pid) for pid in pids[1:]), pids
    return started["proc"], pids


def reset(client: RpcClient) -> None:
    """Vanish without a Close frame: SO_LINGER (1, 0) makes close() send a TCP RST."""
    sock = client.ws.sock
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def assert_dropped(client: RpcClient) -> None:
    """The connection ends without a Close frame (the worker died): reads fail, bounded by the socket timeout."""
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        for _ in range(100):
            frame = client.ws.recv_frame()
            assert frame.opcode != websocket.ABNF.OPCODE_CLOSE, "a dead worker sent a Close frame"
    client.ws.shutdown()


@dataclass
class Baseline:
    """The worker and its descriptor count, taken before a fault."""

    worker: int
    fds: int


def baseline(server: Server) -> Baseline:
    worker = only_worker(server)
    assert wait_until(lambda: children_of(worker) == []), f"children left by an earlier test: {children_of(worker)}"
    return Baseline(worker, fd_count(worker))


def assert_clean(server: Server, before: Baseline, pids: list[int], *, same_worker: bool = True) -> int:
    """Everything the fault touched is gone and the service answers; the worker now serving."""
    gone = wait_until(lambda: not any(pid_exists(pid) for pid in pids), SETTLE)
    assert gone, f"left behind: {[(pid, state_of(pid)) for pid in pids if pid_exists(pid)]}"
    worker = only_worker(server)
    if same_worker:
        assert worker == before.worker, "the worker was replaced"
    else:
        assert worker != before.worker, "the worker was not replaced"
        assert not pid_exists(before.worker), f"the old worker is still there ({state_of(before.worker)})"
    master = server.process.pid if server.process else 0
    assert wait_until(lambda: children_of(worker) == [], SETTLE), (
        f"worker children left: {[(pid, state_of(pid)) for pid in children_of(worker)]}"
    )
    assert zombies_among(children_of(master)) == [], "zombies under the master"
    if not same_worker:
        warm_up(server)  # the new worker's first use, as the old one had before its baseline
    limit = before.fds + FD_SLACK
    assert wait_until(lambda: fd_count(worker) <= limit, SETTLE), (
        f"worker fds: {before.fds} before, {fd_count(worker)} after: {sorted(os.listdir(f'/proc/{worker}/fd'))}"
    )
    ping(server)
    return worker


def warmed_up_server() -> Iterator[Server]:
    """A server with a short KILL_GRACE and DRAIN_TIMEOUT, warmed up, stopped at the end."""
    running = Server(env=FAULT_ENV).start()
    try:
        warm_up(running)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def faulty() -> Iterator[Server]:
    """Shared by the faults that keep the worker."""
    yield from warmed_up_server()


@pytest.fixture
def own_server() -> Iterator[Server]:
    """A server of its own, for a test that kills or restarts its worker."""
    yield from warmed_up_server()


# -- a client that vanishes --------------------------------------------------------------

FLOOD = "sleep 1000 & echo $!; exec yes streaming"  # the socket fills: the server is blocked in send
TRICKLE = "sleep 1000 & echo $!; while :; do echo tick; sleep 0.02; done"


@pytest.mark.parametrize("script", [FLOOD, TRICKLE], ids=["flooding", "trickling"])
def test_a_client_reset_mid_stream_leaves_nothing(faulty: Server, script: str) -> None:
    before = baseline(faulty)
    client = RpcClient(faulty.url, faulty.token)
    proc, pids = start_tree(client, script, 1)
    read_lines(client, proc, 20)  # mid-stream
    reset(client)
    assert_clean(faulty, before, pids)


def test_a_client_that_shuts_its_socket_without_a_close_frame_mid_stream_leaves_nothing(faulty: Server) -> None:
    before = baseline(faulty)
    client = RpcClient(faulty.url, faulty.token)
    proc, pids = start_tree(client, FLOOD, 1)
    read_lines(client, proc, 20)
    client.ws.sock.shutdown(socket.SHUT_RDWR)  # a FIN, no Close frame
    client.ws.sock.close()
    assert_clean(faulty, before, pids)


def test_a_client_reset_with_many_kinds_of_processes_and_pending_answers_leaves_nothing(faulty: Server) -> None:
    before = baseline(faulty)
    client = RpcClient(faulty.url, faulty.token)
    pids: list[int] = []
    procs = []
    for _ in range(4):
        proc, tree = start_tree(client, "sleep 1000 & echo $!; sleep 1000 & echo $!; wait", 2)
        procs.append(proc)
        pids += tree
    _, tree = start_tree(client, "sleep 1000 & echo $!; sleep 1000", 1, pty={"rows": 24, "cols": 80})
    pids += tree
    flood = client.call("start", argv=["yes"], binary=True)  # binary frames fill the socket
    pids.append(flood["pid"])
    cat = client.call("start", argv=["cat"])
    pids.append(cat["pid"])
    known = set(children_of(before.worker))
    client.request("run", {"argv": ["sh", "-c", "sleep 1000 & sleep 1000"]})  # run answers only at the end
    assert wait_until(lambda: set(children_of(before.worker)) - known)
    runner = (set(children_of(before.worker)) - known).pop()
    assert wait_until(lambda: len(children_of(runner)) == 2)
    pids += [runner, *children_of(runner)]
    client.request("wait", {"proc": procs[0]})  # answers the server is still holding
    client.request("stop", {"proc": procs[1], "grace": 100})
    for _ in range(3):
        client.request("write", {"proc": cat["proc"], "data": "x" * 60000})
    reset(client)
    assert_clean(faulty, before, pids)


# -- processes that resist -----------------------------------------------------------------


def test_a_tree_that_ignores_sigterm_is_killed_after_kill_grace(faulty: Server) -> None:
    before = baseline(faulty)
    with RpcClient(faulty.url, faulty.token) as client:
        # An ignored signal stays ignored across fork and exec: the sleeps ignore SIGTERM too.
        _, pids = start_tree(client, "trap '' TERM; sleep 1000 & echo $!; while :; do sleep 1; done", 1)
        assert all(signal_ignored(pid, signal.SIGTERM) for pid in pids)
    closed = time.monotonic()
    assert wait_until(lambda: not any(pid_exists(pid) for pid in pids), SETTLE)
    took = time.monotonic() - closed
    assert took >= KILL_GRACE * 0.8, f"gone after {took:.2f} s: SIGTERM was not ignored"
    assert took < KILL_GRACE + 3, f"gone only after {took:.2f} s"
    assert_clean(faulty, before, pids)


def signal_ignored(pid: int, signum: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    return False


@pytest.mark.parametrize(
    "script",
    ["exec >&-; echo closed >&2; sleep 1000", "exec >&- 2>&-; sleep 1000"],
    ids=["stdout-closed", "both-closed"],
)
def test_a_process_that_closes_its_output_but_lives_on_is_killed_at_disconnect(faulty: Server, script: str) -> None:
    before = baseline(faulty)
    with RpcClient(faulty.url, faulty.token) as client:
        started = client.call("start", argv=["sh", "-c", script])
        # Its pipes are at end of file, yet no exit may come while it lives.
        failure = client.error_of("wait", proc=started["proc"], timeout=DRAIN_TIMEOUT + 0.5)
        assert failure.code == -32006
        assert pid_exists(started["pid"])
        info = client.call("find", pid=started["pid"])
        assert info["state"] == "running"
        sleeper = children_of(started["pid"])
    assert_clean(faulty, before, [started["pid"], *sleeper])


def test_a_grandchild_holding_the_pipe_delays_exit_by_the_drain_bound_then_dies_at_disconnect(
    faulty: Server,
) -> None:
    before = baseline(faulty)
    with RpcClient(faulty.url, faulty.token) as client:
        began = time.monotonic()
        proc, pids = start_tree(client, "sleep 1000 & echo $!; exit 0", 1)
        status = client.collect(proc).exit
        took = time.monotonic() - began
        assert status is not None
        assert (status["code"], status["output_incomplete"]) == (0, True)
        assert DRAIN_TIMEOUT * 0.8 <= took < DRAIN_TIMEOUT + 5, took
        assert not pid_exists(pids[0]), "the leader was not reaped"
        assert pid_exists(pids[1]), "the grandchild should still run: only the drain was cut"
        assert client.call("ping")
    assert_clean(faulty, before, pids)


def test_a_stopped_tree_is_killed_at_disconnect(faulty: Server) -> None:
    """SIGSTOP cannot be caught: only SIGKILL (after KILL_GRACE) ends a stopped group."""
    before = baseline(faulty)
    with RpcClient(faulty.url, faulty.token) as client:
        # exec, not a child: dash vforks foreground commands, and a vfork parent whose child is
        # stopped before its exec waits in state D rather than T.
        proc, pids = start_tree(client, "sleep 1000 & echo $!; exec sleep 1000", 1)
        client.call("signal", proc=proc, signal="SIGSTOP")
        assert wait_until(lambda: all(state_of(pid) == "T" for pid in pids), SETTLE), [state_of(p) for p in pids]
    assert_clean(faulty, before, pids)


# -- workers that die or are replaced ---------------------------------------------------------


def test_a_worker_killed_by_sigkill_leaves_no_process_and_a_new_worker_serves(own_server: Server) -> None:
    before = baseline(own_server)
    client = RpcClient(own_server.url, own_server.token)
    pids: list[int] = []
    _, tree = start_tree(client, "sleep 1000 & echo $!; sleep 1000 & echo $!; wait", 2)
    pids += tree
    _, tree = start_tree(client, "trap '' TERM; sleep 1000 & echo $!; while :; do sleep 1; done", 1)
    pids += tree
    _, tree = start_tree(client, "exec >&-; sleep 1000 & echo $! >&2; sleep 1000", 1, "stderr")
    pids += tree
    _, tree = start_tree(client, "sleep 1000 & echo $!; exit 0", 1)  # an orphan, adopted by the worker
    pids += tree
    _, tree = start_tree(client, "sleep 1000 & echo $!; sleep 1000", 1, on_disconnect="keep")  # outlives clients
    pids += tree
    _, tree = start_tree(client, "sleep 1000 & echo $!; sleep 1000", 1, pty={"rows": 24, "cols": 80})
    pids += tree
    assert wait_until(lambda: len(children_of(before.worker)) >= 6)
    os.kill(before.worker, signal.SIGKILL)
    assert_dropped(client)
    assert_clean(own_server, before, pids, same_worker=False)


def test_a_worker_restarted_by_sighup_closes_sessions_with_1001_and_stops_their_processes(
    own_server: Server,
) -> None:
    before = baseline(own_server)
    assert own_server.process is not None
    clients = [RpcClient(own_server.url, own_server.token) for _ in range(3)]
    pids: list[int] = []
    for client in clients:
        _, tree = start_tree(client, "sleep 1000 & echo $!; sleep 1000 & echo $!; wait", 2)
        pids += tree
    _, tree = start_tree(clients[0], "trap '' TERM; sleep 1000 & echo $!; while :; do sleep 1; done", 1)
    pids += tree
    _, tree = start_tree(clients[1], TRICKLE, 1)  # streaming while the reload comes
    pids += tree
    _, tree = start_tree(clients[2], "sleep 1000 & echo $!; sleep 1000", 1, on_disconnect="keep")
    pids += tree
    _, tree = start_tree(clients[2], "sleep 1000 & echo $!; sleep 1000", 1, pty={"rows": 24, "cols": 80})
    pids += tree
    own_server.process.send_signal(signal.SIGHUP)
    for client in clients:
        assert read_close(client.ws, SETTLE) == (1001, "server shutting down")
        client.ws.shutdown()
    assert_clean(own_server, before, pids, same_worker=False)
