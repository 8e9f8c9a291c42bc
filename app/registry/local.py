"""Who is connected and which processes exist, in this worker.

The registry is per worker process: ``proc`` ids are unique for the life of
the worker and never reused.  Processes belong to the token identity that
started them.  Each also remembers the client (connection) that started it:
that client's limits count it, and its disconnect stops it unless it was
started with ``on_disconnect: "keep"``.  A kept process outlives its client
and keeps its exit status until released or ``KEEP_EXITED_SECONDS`` pass.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gevent

from app import metrics
from app.errors import ErrorCode, RpcError
from app.processes.process import Process

if TYPE_CHECKING:
    from app.security.identity import Identity


@dataclass
class Client:
    """One WebSocket connection."""

    owner: str
    remote_addr: str | None
    close: Callable[[int, str], None]
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    connected_at: float = field(default_factory=time.time)
    started: dict[int, Process] = field(default_factory=dict)
    running: set[int] = field(default_factory=set)
    exited_order: deque[int] = field(default_factory=deque)
    processes_started: int = 0

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "remote_addr": self.remote_addr,
            "connected_at": self.connected_at,
            "processes": sorted(self.started),
        }


@dataclass
class Registry:
    clients: dict[str, Client] = field(default_factory=dict)
    processes: dict[int, Process] = field(default_factory=dict)
    starters: dict[int, Client] = field(default_factory=dict)
    starting: Counter[str] = field(default_factory=Counter)  # starts allowed, not yet registered
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def next_proc_id(self) -> int:
        return next(self._ids)

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
                self.forget(client.exited_order.popleft())

    def forget(self, proc_id: int) -> None:
        self.processes.pop(proc_id, None)
        client = self.starters.pop(proc_id, None)
        if client is not None:
            client.started.pop(proc_id, None)
            client.running.discard(proc_id)
            if proc_id in client.exited_order:
                client.exited_order.remove(proc_id)

    def lookup(self, viewer: Identity, proc_id: int) -> Process:
        """The process, if ``viewer`` may see it (admins see all); else NO_SUCH_PROCESS."""
        process = self.processes.get(proc_id)
        if process is None or not viewer.may_see(process.options.owner):
            raise RpcError(ErrorCode.NO_SUCH_PROCESS, f"no such process: {proc_id}")
        return process

    def visible_to(self, viewer: Identity) -> list[Process]:
        return [process for process in self.processes.values() if viewer.may_see(process.options.owner)]

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
        starter = self.starters.get(process.id)
        connected = starter is not None and starter.id in self.clients
        return dict(process.info(), owner=process.options.owner, client=starter.id if connected else None)


registry = Registry()
