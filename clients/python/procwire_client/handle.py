"""What the sync :class:`~procwire_client.Process` and the :class:`~procwire_client.AsyncProcess`
share: the state a client's reader changes as the events of a process arrive.

Subclasses say how an item reaches the reader of the output (a thread-safe
queue, an asyncio queue) and which event marks the end.
"""

from __future__ import annotations

from typing import Any, Protocol

from procwire_client.errors import ProcwireConnectionError
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
    ) -> None:
        self.proc = proc
        self.pid = pid
        self.pgid = pgid
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
