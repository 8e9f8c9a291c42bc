"""Who is connected and which processes exist, in this worker's memory.

The default registry: ``proc`` ids are unique for the life of the worker
and never reused.  Processes belong to the token identity that started
them.  Each also remembers the client (connection) that started it: that
client's limits count it, and its disconnect stops it unless it was started
with ``on_disconnect: "keep"``.  A kept process outlives its client and
keeps its exit status until released or ``KEEP_EXITED_SECONDS`` pass.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import AsyncResult

from app import metrics
from app.errors import ErrorCode, RpcError
from app.registry.base import Answer, Client

if TYPE_CHECKING:
    from app.processes.process import Process
    from app.security.identity import Identity


class LocalRegistry:
    """The :class:`~app.registry.base.Registry` of one worker, on its own."""

    def __init__(self, node: str, on_forget: Callable[[Process], None] | None = None) -> None:
        self.node = node
        self._on_forget = on_forget
        self.clients: dict[str, Client] = {}
        self.processes: dict[int, Process] = {}
        self.starters: dict[int, Client] = {}
        self.starting: Counter[str] = Counter()  # starts allowed, not yet registered
        self._ids = itertools.count(1)

    def next_proc_id(self) -> int:
        return next(self._ids)

    # -- connections ----------------------------------------------------------------

    def add_client(self, client: Client) -> None:
        self.clients[client.id] = client

    def remove_client(self, client: Client) -> None:
        """The connection is gone: forget what it started, except kept processes."""
        self.clients.pop(client.id, None)
        for proc_id, process in list(client.started.items()):
            if process.options.keep:
                client.started.pop(proc_id)
            else:
                self.forget(proc_id)

    def clients_info(self) -> list[dict[str, Any]]:
        return [client.info() for client in self.clients.values()]

    def connections_elsewhere(self, owner: str) -> int:
        return 0

    def close_client(self, client_id: str, code: int, reason: str) -> dict[str, Any] | None:
        client = self.clients.get(client_id)
        if client is None:
            return None
        client.close(code, reason)
        return client.info()

    def local_clients(self) -> list[Client]:
        return list(self.clients.values())

    # -- processes ------------------------------------------------------------------

    def add_process(self, client: Client, process: Process, *, keep_exited: int, keep_seconds: float) -> None:
        self.processes[process.id] = process
        self.starters[process.id] = client
        client.started[process.id] = process
        client.running.add(process.id)
        client.processes_started += 1
        metrics.PROCESSES_STARTED.inc()
        metrics.PROCESSES_RUNNING.inc()
        process.when_finished.append(lambda done: self._finished(client, done, keep_exited, keep_seconds))

    def _finished(self, client: Client, process: Process, keep_exited: int, keep_seconds: float) -> None:
        """Remember the exit for a while: kept ones by time, others per client by count."""
        client.running.discard(process.id)
        metrics.PROCESSES_RUNNING.dec()
        metrics.EXITS.labels(metrics.exit_reason(process.status or {})).inc()
        if process.options.keep:
            gevent.spawn_later(keep_seconds, self.forget, process.id)
        elif process.id in client.started:
            client.exited_order.append(process.id)
            while len(client.exited_order) > keep_exited:
                self._drop(client.exited_order.popleft())

    def forget(self, proc_id: int) -> None:
        client = self.starters.get(proc_id)
        if client is not None and proc_id in client.exited_order:
            client.exited_order.remove(proc_id)
        self._drop(proc_id)

    def _drop(self, proc_id: int) -> None:
        """Forget a process already out of its client's ring of exits (a scan of the ring per start, saved)."""
        process = self.processes.pop(proc_id, None)
        if process is not None and self._on_forget is not None:
            self._on_forget(process)
        client = self.starters.pop(proc_id, None)
        if client is not None:
            client.started.pop(proc_id, None)
            client.running.discard(proc_id)

    def release(self, viewer: Identity, proc_id: int) -> Answer:
        return self.release_process(self.lookup(viewer, proc_id))

    def release_process(self, process: Process) -> dict[str, Any]:
        if process.running:
            raise RpcError(ErrorCode.PROCESS_RUNNING, f"process {process.id} is still running")
        self.forget(process.id)
        return {}

    def lookup(self, viewer: Identity, proc_id: int) -> Process:
        """The process, if ``viewer`` may see it (admins see all); else NO_SUCH_PROCESS."""
        process = self.processes.get(proc_id)
        if process is None or not viewer.may_see(process.options.owner):
            raise RpcError(ErrorCode.NO_SUCH_PROCESS, f"no such process: {proc_id}")
        return process

    def visible_to(self, viewer: Identity) -> dict[str, Any]:
        return {"processes": [self.listed(process) for process in self._visible(viewer)]}

    def find(self, viewer: Identity, pid: int) -> dict[str, Any]:
        for process in self._visible(viewer):
            if process.pid == pid:
                return self.listed(process)
        raise RpcError(ErrorCode.NO_SUCH_PROCESS, f"no process of yours has pid {pid}")

    def _visible(self, viewer: Identity) -> list[Process]:
        return [process for process in self.processes.values() if viewer.may_see(process.options.owner)]

    def listed(self, process: Process) -> dict[str, Any]:
        """A process as ``list`` and ``find`` show it."""
        return dict(process.info(), owner=process.options.owner, node=self.node)

    def running_count(self, owner: str) -> tuple[int, int]:
        """Processes running or being started: ``owner``'s, and everyone's."""
        running = [process.options.owner for process in self.processes.values() if process.running]
        return running.count(owner) + self.starting[owner], len(running) + self.starting.total()

    @contextlib.contextmanager
    def reserved(self, owner: str) -> Iterator[None]:
        """Count a start in ``running_count`` until it is registered or has failed."""
        self.starting[owner] += 1
        try:
            yield
        finally:
            self.starting[owner] -= 1
            if not self.starting[owner]:
                del self.starting[owner]

    def all_processes(self) -> list[dict[str, Any]]:
        return [self.describe(process) for process in self.processes.values()]

    def describe(self, process: Process) -> dict[str, Any]:
        """A process as ``/api/processes`` shows it: with the connection that started it."""
        starter = self.starters.get(process.id)
        connected = starter.id if starter is not None and starter.id in self.clients else None
        return dict(self.listed(process), client=connected)

    def local_processes(self) -> list[Process]:
        return list(self.processes.values())

    def ask_other_nodes(self, op: str, params: dict[str, Any], only: str | None = None) -> dict[str, AsyncResult]:
        return {}  # alone

    def start(self) -> None:
        pass  # nothing runs in the background

    def close(self) -> None:
        pass  # nothing outlives the worker
