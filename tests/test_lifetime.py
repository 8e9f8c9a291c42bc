"""No process outlives its worker or its host, against the real server.

* A worker that the arbiter SIGKILLs at the end of ``GRACEFUL_TIMEOUT`` (here a
  session still waits out a long ``KILL_GRACE`` for processes that ignore
  SIGTERM) is reaped by the master's ``on_exit``, which kills what it adopted.
* A host that vanishes (its master and every worker SIGKILLed at once) leaves
  nothing either: each worker's guardian kills the groups it was told about.
* The guardian comes back if it is killed, and an idle worker has none.

While a test runs, this test process is a child subreaper: what a dead
master leaves behind comes to us rather than to an init that may never reap
it, so a dead process can be told from a running one, and whatever is left
is killed, by pid, and reaped at the end.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client import RpcClient, chunk_bytes
from tests.server import Server, children_of, pid_exists, wait_until

pytestmark = pytest.mark.timeout(90)

PR_SET_CHILD_SUBREAPER = 36
SETTLE = 10.0  # the longest a clean-up may take before it counts as a leak
GRACEFUL_TIMEOUT = 1
IGNORES_TERM = "trap '' TERM; sleep 1000 & echo $!; while :; do sleep 1; done"
PLAIN = "sleep 1000 & echo $!; sleep 1000"
ORPHANING = "sleep 1000 & echo $!; exit 0"  # the sleep is adopted by the worker
PTY = {"rows": 24, "cols": 80}


# -- helpers ----------------------------------------------------------------------


class Adopter:
    """This process as a child subreaper, for one test; see the module docstring."""

    def __init__(self) -> None:
        self._before = set(children_of(os.getpid()))
        _set_subreaper(1)

    def adopted(self) -> set[int]:
        return set(children_of(os.getpid())) - self._before

    def reap(self) -> None:
        """Reap every adopted process that has exited (never a running one)."""
        for pid in self.adopted():
            try:
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                continue

    def all_gone(self, pids: list[int]) -> bool:
        self.reap()
        return not any(pid_exists(pid) for pid in pids)

    def close(self) -> None:
        """Kill what is still here (by pid: all of it descends from our servers) and reap it."""
        for pid in self.adopted():
            _kill(pid)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                continue
        _set_subreaper(0)


def _set_subreaper(on: int) -> None:
    assert ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, on, 0, 0, 0) == 0


def _kill(pid: int, signum: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


@pytest.fixture
def adopter() -> Iterator[Adopter]:
    adopting = Adopter()
    try:
        yield adopting
    finally:
        adopting.close()


def state_of(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2]


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def is_guardian(pid: int) -> bool:
    try:
        return b"guardian.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def guardians_of(worker: int) -> list[int]:
    return [pid for pid in children_of(worker) if is_guardian(pid)]


def start_tree(client: RpcClient, script: str, **params: object) -> list[int]:
    """Start ``sh -c script``, whose first stdout line is the pid of its background
    child (``echo $!``); the pids of the leader and of that child."""
    started = client.call("start", argv=["sh", "-c", script], **params)
    seen = b""
    deadline = time.monotonic() + SETTLE
    while b"\n" not in seen:
        assert time.monotonic() < deadline, f"no pid from process {started['proc']}: {seen!r}"
        message = client.next_message()
        params_ = message.get("params", {}) if isinstance(message, dict) else {}
        if message.get("method") == "output" and params_["proc"] == started["proc"]:
            seen += chunk_bytes(params_)
    child = int(seen.split(b"\n")[0].strip())
    assert pid_exists(child)
    return [started["pid"], child]


def leftovers(pids: list[int]) -> list[tuple[int, str | None]]:
    return [(pid, state_of(pid)) for pid in pids if pid_exists(pid)]


def start_every_kind(client: RpcClient) -> list[int]:
    """A plain tree, one on a pty, one that ignores SIGTERM, a kept one and
    one whose grandchild was orphaned: every pid of them."""
    pids: list[int] = []
    pids += start_tree(client, PLAIN)
    pids += start_tree(client, PLAIN, pty=PTY)
    pids += start_tree(client, IGNORES_TERM)
    pids += start_tree(client, IGNORES_TERM, on_disconnect="keep", pty=PTY)
    pids += start_tree(client, ORPHANING)
    return pids


# -- a worker killed at the end of GRACEFUL_TIMEOUT ----------------------------------------


def test_a_worker_killed_at_the_end_of_graceful_timeout_leaves_no_process(adopter: Adopter) -> None:
    """The session still waits out KILL_GRACE when the arbiter SIGKILLs the worker and exits.
    The guardian is stopped, so that the master's on_exit alone must do it."""
    server = Server(env={"PROCWIRE_GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT), "PROCWIRE_KILL_GRACE": "60"}).start()
    guardians: list[int] = []
    try:
        assert server.process is not None
        with RpcClient(server.url, server.token) as client:
            pids = start_every_kind(client)
            worker = parent_of(pids[0])
            guardians = guardians_of(worker)
            assert len(guardians) == 1, children_of(worker)
            _kill(guardians[0], signal.SIGSTOP)
            began = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            server.process.wait(timeout=GRACEFUL_TIMEOUT + 15)
        took = time.monotonic() - began
        assert took < GRACEFUL_TIMEOUT + 6, f"the master took {took:.1f} s to exit"
        assert wait_until(lambda: adopter.all_gone(pids), SETTLE), f"left behind: {leftovers(pids)}"
        assert not pid_exists(worker)
    finally:
        for pid in guardians:
            _kill(pid, signal.SIGCONT)  # it sees its worker's end and exits
        server.stop()


# -- a host that vanishes ----------------------------------------------------------------


def test_a_host_whose_master_and_workers_are_killed_at_once_leaves_no_process(adopter: Adopter) -> None:
    server = Server(env={"PROCWIRE_WORKERS": "2"}).start()
    clients: list[RpcClient] = []
    try:
        assert server.process is not None
        assert wait_until(lambda: len(server.worker_pids()) == 2), server.worker_pids()
        workers = server.worker_pids()
        pids: list[int] = []
        serving: set[int] = set()
        # Connections land on either worker: open them until each worker runs processes.
        while serving != set(workers):
            assert len(clients) < 20, "every connection landed on the same worker"
            clients.append(RpcClient(server.url, server.token))
            tree = start_every_kind(clients[-1])
            serving.add(parent_of(tree[0]))
            pids += tree
        guardians = [pid for worker in workers for pid in guardians_of(worker)]
        assert len(guardians) == 2, [children_of(worker) for worker in workers]
        for pid in [server.process.pid, *workers]:
            os.kill(pid, signal.SIGKILL)
        everything = [*pids, *guardians, *workers, server.process.pid]
        server.process.wait(timeout=5)
        assert wait_until(lambda: adopter.all_gone(everything), 5.0), f"left behind: {leftovers(everything)}"
    finally:
        for client in clients:
            client.ws.shutdown()
        server.stop()


def test_a_killed_guardian_is_replaced_and_guards_what_runs_already(adopter: Adopter) -> None:
    server = Server().start()
    try:
        assert server.process is not None
        with RpcClient(server.url, server.token) as client:
            pids = start_every_kind(client)
            worker = parent_of(pids[0])
            first = guardians_of(worker)
            assert len(first) == 1
            time.sleep(1.2)  # one that dies at once is not restarted (an exec that fails)
            os.kill(first[0], signal.SIGKILL)
            assert wait_until(lambda: guardians_of(worker) not in ([], first)), children_of(worker)
            second = guardians_of(worker)
            time.sleep(0.5)  # it reads its registrations
            for pid in [server.process.pid, worker]:
                os.kill(pid, signal.SIGKILL)
            everything = [*pids, *first, *second, worker, server.process.pid]
            server.process.wait(timeout=5)
            assert wait_until(lambda: adopter.all_gone(everything), 5.0), f"left behind: {leftovers(everything)}"
    finally:
        server.stop()


# -- the guardian's own lifetime ---------------------------------------------------------------


def test_an_idle_worker_lets_its_guardian_go_and_starts_another_with_its_next_process(server: Server) -> None:
    with RpcClient(server.url, server.token) as client:
        started = client.call("start", argv=["sleep", "1000"])
        worker = parent_of(started["pid"])
        # Two for a moment if an earlier test's guardian was let go just before and is exiting.
        first = set(guardians_of(worker))
        assert first, children_of(worker)
        client.call("kill", proc=started["proc"])
        client.call("wait", proc=started["proc"], timeout=10)
        assert wait_until(lambda: children_of(worker) == [], SETTLE), [(p, state_of(p)) for p in children_of(worker)]
        assert client.run_to_exit(["true"]).exit is not None
        assert set(guardians_of(worker)) - first, children_of(worker)
