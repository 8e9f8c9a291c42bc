"""What the sans-I/O core makes of the frames it receives: one event per thing that happened.

Events are plain values; a client (sync or asyncio) reads them in order and
acts on them: wake the caller of an answered request, hand output to the
handle of its process, end a process's stream at its exit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from procwire_client.errors import ProcwireConnectionError, ProcwireError
from procwire_client.results import ExitStatus


@dataclass(frozen=True)
class Hello:
    """The server's first message: its name, version, limits, this connection's id."""

    params: dict[str, Any]


@dataclass(frozen=True)
class Answered:
    """The result of request ``id`` (``method`` and ``params`` as sent)."""

    id: int
    method: str
    params: dict[str, Any]
    result: Any


@dataclass(frozen=True)
class Failed:
    """The error answer of request ``id``, as the exception class of its code
    (or the connection error that ended it unanswered)."""

    id: int
    method: str
    params: dict[str, Any]
    error: ProcwireError | ProcwireConnectionError


@dataclass(frozen=True)
class Output:
    """Bytes of a process's ``stream``, starting at byte ``offset`` of that stream.

    Binary frames and ``output`` notifications for the same bytes give the same
    event; bytes already received (a replay overlapping what came before) are
    cut off, so each stream's events are contiguous unless the server dropped
    history (then ``offset`` jumps ahead).
    """

    proc: int
    stream: str
    data: bytes
    offset: int


@dataclass(frozen=True)
class Screen:
    """The current screen of a process on a pty (``attach`` with ``snapshot``);
    the live output goes on from ``offset``."""

    proc: int
    data: bytes
    offset: int
    rows: int | None = None
    cols: int | None = None


@dataclass(frozen=True)
class Exited:
    """The process ended; every byte of its output came before this event."""

    proc: int
    status: ExitStatus


@dataclass(frozen=True)
class StrayError:
    """An error with id null (a refused ``write`` notification or binary stdin frame):
    ``proc`` is the process it names, else the last one written to, else ``None``."""

    error: ProcwireError
    proc: int | None


Event = Hello | Answered | Failed | Output | Screen | Exited | StrayError
