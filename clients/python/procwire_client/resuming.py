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

import time
from typing import TYPE_CHECKING

import websocket

from procwire_client.connection import Call, Connection
from procwire_client.core import Protocol
from procwire_client.core.resume import (
    history_gap,
    not_kept_message,
    resume_failed_message,
    resume_params,
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
        opened = self._reopen()
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
            self._reattach(process, received.get(process.proc, process.offsets))
        return True

    def _reopen(self) -> tuple[websocket.WebSocket, Protocol] | None:
        """A new connection (its hello read), or ``None`` once the policy gives up."""
        assert self.reconnect is not None
        give_up_at = time.monotonic() + self.reconnect.deadline
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

    def _reattach(self, process: Process, offsets: dict[str, int]) -> None:
        """Attach ``process`` again from ``offsets``; its answer arrives in the reader thread."""
        proc = process.proc
        with self._lock:
            self._protocol.offsets[proc] = dict(offsets)

        def resumed(call: Call) -> None:
            error = self._resume_error(proc, offsets, call)
            if error is None:
                process._attached(Attachment.from_json(call.result), dict(self._protocol.offsets.get(proc, {})))
            else:
                self._unroute(process)
                process._connection_lost(error)

        try:
            self._request("attach", resume_params(proc, offsets, process._output_format), resumed)
        except ProcwireConnectionError as error:
            self._unroute(process)
            process._connection_lost(ProcwireConnectionError(resume_failed_message(proc, error)))

    @staticmethod
    def _resume_error(proc: int, offsets: dict[str, int], call: Call) -> ProcwireConnectionError | None:
        """Why the re-attach did not resume exactly where the output stopped, if it did not."""
        if call.error is not None:
            return ProcwireConnectionError(resume_failed_message(proc, call.error))
        gap = history_gap(proc, offsets, call.result)
        return None if gap is None else ProcwireConnectionError(gap)
