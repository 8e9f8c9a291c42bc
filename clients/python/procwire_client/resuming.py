"""Resume after a dropped connection, for the sync client (``Client(..., reconnect=True)``).

When the connection drops, the reader thread reconnects (with the policy's
backoff, until its deadline) and re-attaches every kept process it was
following from exactly the offsets it had received, in the same format: the
server replays from there, so each iterator goes on with no byte lost and
none repeated.  Calls in flight fail with :class:`ProcwireConnectionError`
(none is retried: the client cannot know whether the server acted on them);
processes that were not kept are reported as lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import websocket

from procwire_client.connection import Call, Connection
from procwire_client.core import Protocol
from procwire_client.core.resume import (
    RESUME_RETRY_DELAY,
    history_gap,
    not_kept_message,
    resume_failed_message,
    resume_params,
    worth_retrying,
)
from procwire_client.errors import AuthenticationError, ProcwireConnectionError
from procwire_client.results import Attachment

if TYPE_CHECKING:
    from procwire_client.process import Process


class ResumingConnection(Connection):
    """A :class:`Connection` that reconnects and resumes its kept processes."""

    def _resume(self, reason: ProcwireConnectionError) -> bool:
        if self.reconnect is None:
            return False
        give_up_at = time.monotonic() + self.reconnect.deadline
        with self._lock:
            self._reconnecting = True
            failed = self._protocol.connection_lost(reason)
            received = {proc: dict(ends) for proc, ends in self._protocol.offsets.items()}
            followed = list(self._procs.values())
        self._dispatch(failed)
        kept = [process for process in followed if process._kept]
        for process in followed:
            if not process._kept:
                self._unroute(process)
                process._connection_lost(ProcwireConnectionError(not_kept_message(process.proc)))
        opened = self._reopen(give_up_at)
        if opened is None:
            return False
        ws, protocol = opened
        with self._lock:  # close() sets _closing under it: it sees either the new socket or none
            if self._closing:  # closed while reconnecting: the new connection is not wanted
                ws.shutdown()
                return False
            with self._send_lock:
                old, self._ws = self._ws, ws
            old.shutdown()
            self._protocol = protocol
            self._set_hello()
            self._reconnecting = False
            self.reconnects += 1
        for process in kept:
            self._reattach(process, received.get(process.proc, process.offsets), give_up_at)
        return True

    def _reopen(self, give_up_at: float) -> tuple[websocket.WebSocket, Protocol] | None:
        """A new connection (its hello read), or ``None`` once the policy gives up."""
        assert self.reconnect is not None
        for delay in self.reconnect.delays():
            if time.monotonic() + delay > give_up_at or self._closing_event.wait(delay):
                return None
            protocol = Protocol()
            try:
                return self._open(protocol), protocol
            except AuthenticationError:
                return None  # the token is no longer accepted: trying again will not help
            except ProcwireConnectionError:
                continue
        return None

    def _reattach(self, process: Process, offsets: dict[str, int], give_up_at: float) -> None:
        """Attach ``process`` again from ``offsets``; its answer arrives in the reader thread."""
        proc = process.proc
        with self._lock:
            self._protocol.offsets[proc] = dict(offsets)

        def resumed(call: Call) -> None:
            if worth_retrying(call.error, time.monotonic(), give_up_at):
                self._later(lambda: self._reattach_again(process, offsets, give_up_at))
                return
            error = self._resume_error(proc, offsets, call)
            if error is None:
                process._attached(Attachment.from_json(call.result), dict(self._protocol.offsets.get(proc, {})))
            else:
                self._unroute(process)
                process._connection_lost(error)

        try:
            self._request("attach", resume_params(proc, offsets, process._output_format), resumed)
        except ProcwireConnectionError as error:
            if self._reconnecting:
                return  # dropped again: the next resume attaches it (it is still routed)
            self._unroute(process)
            process._connection_lost(ProcwireConnectionError(resume_failed_message(proc, error)))

    def _later(self, action: Callable[[], None]) -> None:
        """``action`` after :data:`RESUME_RETRY_DELAY`, in a thread of its own (not the
        reader's), unless the client is closed meanwhile."""

        def run() -> None:
            if not self._closing_event.wait(RESUME_RETRY_DELAY):
                action()

        threading.Thread(target=run, name="procwire-resume", daemon=True).start()

    def _reattach_again(self, process: Process, offsets: dict[str, int], give_up_at: float) -> None:
        with self._lock:
            if self._reconnecting or self._procs.get(process.proc) is not process:
                return  # dropped again (the next resume attaches it), or it was detached
        self._reattach(process, offsets, give_up_at)

    @staticmethod
    def _resume_error(proc: int, offsets: dict[str, int], call: Call) -> ProcwireConnectionError | None:
        """Why the re-attach did not resume exactly where the output stopped, if it did not."""
        if call.error is not None:
            return ProcwireConnectionError(resume_failed_message(proc, call.error))
        gap = history_gap(proc, offsets, call.result)
        return None if gap is None else ProcwireConnectionError(gap)
