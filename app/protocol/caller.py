"""The connection as the methods see it.

Methods act for a caller: its identity and settings, the client record
that counts its processes, the registry, and the sink its output goes to.
The edge's :class:`~app.edge.session.Session` is one; naming only what the
methods use keeps the protocol layer free of the edge (no import circle).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from app.processes.sinks import OutputSink
from app.security.start_gate import Requester

if TYPE_CHECKING:
    from app.processes.options import Limits
    from app.processes.process import Process
    from app.protocol.output import OutputFormat
    from app.registry.base import Answer, ProcessHandle
    from app.security.shares import Shares
    from config import Settings


class ConnectionSink(OutputSink, Protocol):
    """Where the output of the caller's own processes goes: its connection."""

    def subscribed(self, process: Process) -> None: ...


class Caller(Requester, Protocol):
    """A :class:`~app.security.start_gate.Requester` (identity, client, registry) and more."""

    @property
    def settings(self) -> Settings: ...

    @property
    def limits(self) -> Limits: ...

    @property
    def subscriber(self) -> ConnectionSink: ...

    @property
    def shares(self) -> Shares: ...

    @property
    def modes(self) -> dict[int, str]:
        """The mode of each process this connection attached (app/protocol/access.py)."""
        ...

    def receives(self, proc: int) -> bool: ...

    def notify(self, method: str, params: dict[str, Any]) -> None: ...

    def lookup(self, proc: int) -> ProcessHandle: ...

    def attach(
        self, process: ProcessHandle, offsets: dict[str, int], output_format: OutputFormat, snapshot: bool, mode: str
    ) -> dict[str, Any]: ...

    def detach(self, process: ProcessHandle) -> None: ...

    def resize(self, process: ProcessHandle, rows: int, cols: int) -> Answer:
        """This connection's size for ``process``'s terminal; it counts until the connection detaches or leaves."""
        ...

    def sized(self, process: Process, size: tuple[int, int]) -> None:
        """``process`` was started on a terminal of ``size``: this connection's first size for it."""
        ...

    def after_reply(self, callback: Callable[[], None]) -> None: ...
