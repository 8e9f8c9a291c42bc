"""What the sync :class:`~procwire_client.Process` and the :class:`~procwire_client.AsyncProcess`
share: the state a client's reader changes as the events of a process arrive.

Subclasses say how an item reaches the reader of the output (a thread-safe
queue, an asyncio queue) and which event marks the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, MutableMapping
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from procwire_client.core import Exited, Output, Screen, StrayError
from procwire_client.errors import ProcwireConnectionError, ProcwireError
from procwire_client.results import Attachment, ExitStatus

END = object()  # the last item of a process's output queue


class Flag(Protocol):
    """``threading.Event`` or ``asyncio.Event``: the end of a process's stream."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...


class ProcessHandle:
    """One process as one connection follows it: offsets, exit status, why its stream ended."""

    _ended: Flag

    def __init__(
        self,
        proc: int,
        *,
        pid: int | None = None,
        pgid: int | None = None,
        pty: bool = False,
        kept: bool = False,
        output_format: dict[str, Any] | None = None,
        recording: str | None = None,
    ) -> None:
        self.proc = proc
        self.pid = pid
        self.pgid = pgid
        self.recording = recording  # the server's recording of it, when one was asked or required
        self.pty = pty
        self._kept = kept  # outlives a dropped connection: resumed by a reconnecting client
        self._output_format = output_format or {}  # binary/encoding asked for, asked again on resume
        self.attachment: Attachment | None = None
        self.offsets: dict[str, int] = {"stdout": 0, "stderr": 0}  # end of what arrived, per stream
        self._status: ExitStatus | None = None
        self._lost: ProcwireConnectionError | None = None
        self._is_detached = False
        self._drained = False

    def __repr__(self) -> str:
        if self._status is not None:
            state = f"exited {self._status.exit_code}"
        else:
            state = "detached" if self._is_detached else "running"
        return f"<{type(self).__name__} proc={self.proc} pid={self.pid} {state}>"

    def _push(self, item: Any) -> None:
        """Hand ``item`` to the reader of the output."""
        raise NotImplementedError

    def _ended_now(self) -> None:
        """The stream just ended: wake whoever waits for something else (the sync writers)."""

    # -- from the client's reader ---------------------------------------------------

    def _output(self, stream: str, data: bytes, offset: int) -> None:
        self.offsets[stream] = offset + len(data)
        self._push((stream, data))

    def _screen(self, data: bytes, offset: int) -> None:
        """The current screen of a pty process; the live output goes on from ``offset``."""
        self.offsets["stdout"] = offset
        self._push(("screen", data))

    def _attached(self, attachment: Attachment, offsets: dict[str, int]) -> None:
        """The ``attach`` answer; the output goes on from ``offsets`` (its ``replay_from``)."""
        self.attachment = attachment
        self.offsets.update(offsets)

    def _exited(self, status: ExitStatus) -> None:
        self._status = status
        self._finish()

    def _stdin_failed(self, error: ProcwireError) -> None:
        """A write the server refused after the fact (an id-null error naming this process)."""
        raise NotImplementedError

    def _connection_lost(self, error: ProcwireConnectionError) -> None:
        if not self._ended.is_set():
            self._lost = error
        self._finish()

    def _detached(self) -> None:
        if not self._ended.is_set():
            self._is_detached = True
        self._finish()

    def _finish(self) -> None:
        if not self._ended.is_set():
            self._ended.set()
            self._push(END)
        self._ended_now()

    # -- state ----------------------------------------------------------------------

    @property
    def exit_status(self) -> ExitStatus | None:
        """The exit status once the ``exit`` arrived, else ``None``."""
        return self._status

    @property
    def returncode(self) -> int | None:
        return None if self._status is None else self._status.returncode

    @property
    def running(self) -> bool:
        return not self._ended.is_set()


Handle = TypeVar("Handle", bound=ProcessHandle)
ProcessEvent = Output | Screen | Exited | StrayError  # the core's events that concern one process


def deliver(
    event: ProcessEvent,
    following: MutableMapping[int, Handle],
    handles: Mapping[int, Handle],
    stray_errors: list[ProcwireError],
    lock: AbstractContextManager[Any] | None = None,
) -> None:
    """Hand one of the core's per-process events to the handle it concerns, as both
    clients' readers do: ``following`` are the handles receiving output (an exit ends
    that, under ``lock`` where other threads change the mapping; lookups need none),
    ``handles`` every live handle (a refused write is blamed on one)."""
    if isinstance(event, StrayError):
        blamed = handles.get(event.proc) if event.proc is not None else None
        if blamed is None:
            stray_errors.append(event.error)
        else:
            blamed._stdin_failed(event.error)
        return
    if isinstance(event, Exited):
        with lock or contextlib.nullcontext():
            ending = following.pop(event.proc, None)
        if ending is not None:
            ending._exited(event.status)
        return
    process = following.get(event.proc)
    if process is None:
        return
    if isinstance(event, Output):
        process._output(event.stream, event.data, event.offset)
    else:
        process._screen(event.data, event.offset)


def process_number(proc: int | ProcessHandle) -> int:
    """The ``proc`` of a handle, or the number given."""
    return proc if isinstance(proc, int) else proc.proc
