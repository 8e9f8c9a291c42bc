"""Who is connected and which processes exist, in this worker.

The registry is per worker process: ``proc`` ids are unique for the life of
the worker and never reused.  Processes belong to the token identity that
started them; each also remembers the client (connection) that started it,
which receives its output and whose disconnect stops it.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from app.process import Process
from app.protocol import ErrorCode, RpcError


@dataclass
class Client:
    """One WebSocket connection."""

    owner: str
    remote_addr: str | None
    close: Callable[[int, str], None]
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    connected_at: float = field(default_factory=time.time)
    processes: dict[int, Process] = field(default_factory=dict)
    exited_order: deque[int] = field(default_factory=deque)

    def running_count(self) -> int:
        """Processes whose exit has not been announced (those are in ``exited_order``)."""
        return len(self.processes) - len(self.exited_order)

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "remote_addr": self.remote_addr,
            "connected_at": self.connected_at,
            "processes": sorted(self.processes),
        }


@dataclass
class Registry:
    clients: dict[str, Client] = field(default_factory=dict)
    processes: dict[int, Process] = field(default_factory=dict)
    owners: dict[int, Client] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def next_proc_id(self) -> int:
        return next(self._ids)

    def add_client(self, client: Client) -> None:
        self.clients[client.id] = client

    def remove_client(self, client: Client) -> None:
        self.clients.pop(client.id, None)
        for proc_id in list(client.processes):
            self.forget(proc_id)

    def add_process(self, client: Client, process: Process) -> None:
        self.processes[process.id] = process
        self.owners[process.id] = client
        client.processes[process.id] = process

    def process_exited(self, process: Process, keep_at_most: int) -> None:
        """Remember the exit; forget the oldest exited ones beyond the cap."""
        client = self.owners.get(process.id)
        if client is None:
            return
        client.exited_order.append(process.id)
        while len(client.exited_order) > keep_at_most:
            self.forget(client.exited_order.popleft())

    def forget(self, proc_id: int) -> None:
        client = self.owners.pop(proc_id, None)
        self.processes.pop(proc_id, None)
        if client is not None:
            client.processes.pop(proc_id, None)
            if proc_id in client.exited_order:
                client.exited_order.remove(proc_id)

    def lookup(self, owner: str, proc_id: int) -> Process:
        """The process, if ``owner`` may see it; else NO_SUCH_PROCESS."""
        process = self.processes.get(proc_id)
        client = self.owners.get(proc_id)
        if process is None or client is None or client.owner != owner:
            raise RpcError(ErrorCode.NO_SUCH_PROCESS, f"no such process: {proc_id}")
        return process

    def visible_to(self, owner: str) -> list[Process]:
        return [process for proc_id, process in self.processes.items() if self.owners[proc_id].owner == owner]

    def all_processes(self) -> list[dict[str, Any]]:
        return [dict(process.info(), client=self.owners[proc_id].id) for proc_id, process in self.processes.items()]


registry = Registry()
