"""What a process's output goes to, and what a sink may read of the process it comes from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from app.processes.history import Replay
from app.processes.options import Options


class Source(Protocol):
    """What a sink reads of the process whose output it gets: a local
    :class:`Process`, or one running on another node."""

    id: int
    options: Options
    streams: list[str]
    offsets: dict[str, int]
    status: dict[str, Any] | None


class OutputSink(Protocol):
    """Where a process's output and exit go (a connection, a collector, a mirror)."""

    def output(self, process: Source, stream: str, data: bytes, offset: int) -> None: ...

    def end_of_stream(self, process: Source, stream: str) -> None: ...

    def exited(self, process: Source) -> None: ...


class Tap(Protocol):
    """What also sees a process's input and resizes (a recording, app.recording)."""

    def input(self, data: bytes) -> None: ...

    def resized(self, rows: int, cols: int) -> None: ...


@dataclass(frozen=True)
class Subscription:
    """What a newly attached sink must be sent first, per stream."""

    replays: dict[str, Replay]
    ended: frozenset[str]  # streams already at end of file: flush after the replay
    live: bool  # False: the process had already finished, send its exit yourself
