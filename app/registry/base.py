"""What the protocol's methods need of the registry, whatever keeps it.

Two implementations: :class:`~app.registry.local.LocalRegistry` (this
worker's memory: the default) and :class:`~app.cluster.registry.ClusterRegistry`
(every worker and host sharing one Redis).  Methods only ever see this
interface and :class:`ProcessHandle`, so they never branch on the mode.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from gevent.event import AsyncResult

from app.processes.sinks import Source
from app.security import audit

if TYPE_CHECKING:
    from app.processes.process import Process
    from app.processes.sinks import OutputSink, Subscription
    from app.security.identity import Identity

Answer: TypeAlias = dict[str, Any] | AsyncResult
"""A method's result now, or later (an AsyncResult set once it is known)."""


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

    def audit(self, event: str, **fields: Any) -> None:
        """One audit line about this connection (its token is its owner)."""
        audit.event(event, client=self.id, token=self.owner, remote_addr=self.remote_addr, **fields)

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "remote_addr": self.remote_addr,
            "connected_at": self.connected_at,
            "processes": sorted(self.started),
        }


class ProcessHandle(Source, Protocol):
    """A process as the methods act on it: here (a :class:`Process`) or on another node."""

    pid: int

    @property
    def running(self) -> bool: ...

    def info(self) -> dict[str, Any]: ...

    def write_stdin(self, data: bytes) -> Answer: ...

    def close_stdin(self) -> Answer: ...

    def send_signal(self, signum: int, group: bool = True) -> Answer: ...

    def resize(self, rows: int, cols: int, controller: str = "") -> Answer:
        """``controller`` (a connection) asks for this size; its size rule decides (app.processes.window)."""
        ...

    def forget_size(self, *controllers: str) -> Answer:
        """``controllers`` detached or left: their sizes stop counting."""
        ...

    def stop(self, signum: int, grace: float | None = None) -> dict[str, Any]: ...

    def wait(self, timeout: float | None = None) -> dict[str, Any]: ...

    def subscribe(self, sink: OutputSink, offsets: dict[str, int]) -> Subscription: ...

    def unsubscribe(self, sink: OutputSink) -> None: ...


class Registry(Protocol):
    """Connections and processes, as far as this worker can see them."""

    node: str  # this worker, as ``list`` and ``hello`` name it (app.cluster.node)

    def add_client(self, client: Client) -> None: ...

    def remove_client(self, client: Client) -> None: ...

    def clients_info(self) -> list[dict[str, Any]]: ...

    def connections_elsewhere(self, owner: str) -> int:
        """``owner``'s connections on other nodes (0 without a cluster)."""
        ...

    def close_client(self, client_id: str, code: int, reason: str) -> dict[str, Any] | None:
        """Close a connection wherever it is; its info, or None if unknown."""
        ...

    def next_proc_id(self) -> int: ...

    def add_process(self, client: Client, process: Process, *, keep_exited: int, keep_seconds: float) -> None: ...

    def forget(self, proc_id: int) -> None: ...

    def release(self, viewer: Identity, proc_id: int) -> Answer:
        """Forget a finished process's status; refused while it runs."""
        ...

    def lookup(self, viewer: Identity, proc_id: int) -> ProcessHandle: ...

    def visible_to(self, viewer: Identity) -> dict[str, Any]:
        """The ``list`` answer: the processes ``viewer`` may see."""
        ...

    def find(self, viewer: Identity, pid: int) -> dict[str, Any]: ...

    def running_count(self, owner: str) -> tuple[int, int]: ...

    def reserved(self, owner: str) -> AbstractContextManager[None]: ...

    def all_processes(self) -> list[dict[str, Any]]: ...

    def local_processes(self) -> list[Process]: ...

    def local_clients(self) -> list[Client]: ...

    def ask_other_nodes(self, op: str, params: dict[str, Any], only: str | None = None) -> dict[str, AsyncResult]:
        """Send ``op`` to every other live node (or ``only`` that one; none without a cluster):
        each node's answer."""
        ...

    def start(self) -> None:
        """Start the background work the registry needs (the cluster's greenlets), once, in the
        worker (app.create_worker_app); an app built for tests never starts it."""
        ...

    def close(self) -> None:
        """The worker stops, its processes ended: leave what others must know."""
        ...
