"""Resume after a dropped connection, for the asyncio client (``AsyncClient(..., reconnect=True)``).

The same behaviour as the sync client's (see :mod:`procwire_client.resuming`):
the reader task reconnects with the policy's backoff, re-attaches every kept
process it was following from exactly the offsets received, fails the calls
in flight and reports the processes that were not kept as lost.
"""

from __future__ import annotations

import asyncio
from typing import Any

from procwire_client.async_connection import AsyncConnection
from procwire_client.async_process import AsyncProcess
from procwire_client.core import Protocol
from procwire_client.core.resume import (
    RESUME_RETRY_DELAY,
    history_gap,
    not_kept_message,
    resume_failed_message,
    resume_params,
    worth_retrying,
)
from procwire_client.errors import AuthenticationError, ProcwireConnectionError, ProcwireError
from procwire_client.results import Attachment


class AsyncResumingConnection(AsyncConnection):
    """An :class:`AsyncConnection` that reconnects and resumes its kept processes."""

    async def _resume(self, reason: ProcwireConnectionError) -> bool:
        if self.reconnect is None:
            return False
        give_up_at = asyncio.get_running_loop().time() + self.reconnect.deadline
        self._reconnecting = True
        self._dispatch(self._protocol.connection_lost(reason))
        received = {proc: dict(ends) for proc, ends in self._protocol.offsets.items()}
        followed = list(self._procs.values())
        for process in followed:
            if not process._kept:
                self._unroute(process)
                process._connection_lost(ProcwireConnectionError(not_kept_message(process.proc)))
        protocol = await self._reopen(give_up_at)
        if protocol is None:
            return False
        if self._closing:  # closed while reconnecting: the new connection is not wanted
            assert self._ws is not None
            await self._ws.close()
            return False
        self._protocol = protocol
        self.hello = protocol.hello or {}
        self._reconnecting = False
        self.reconnects += 1
        for process in followed:
            if process._kept:
                self._reattach(process, received.get(process.proc, process.offsets), give_up_at)
        return True

    async def _reopen(self, give_up_at: float) -> Protocol | None:
        """A new connection (its hello read) in ``self._ws``, or ``None`` once the policy gives up."""
        assert self.reconnect is not None
        loop = asyncio.get_running_loop()
        for delay in self.reconnect.delays():
            if loop.time() + delay > give_up_at or self._closing:
                return None
            await asyncio.sleep(delay)
            protocol = Protocol()
            try:
                self._ws = await self._open(protocol)
            except AuthenticationError:
                return None  # the token is no longer accepted: trying again will not help
            except ProcwireConnectionError:
                continue
            return protocol
        return None

    def _reattach(self, process: AsyncProcess, offsets: dict[str, int], give_up_at: float) -> None:
        """Attach ``process`` again from ``offsets`` (the answer comes through the reader task)."""
        proc = process.proc
        self._protocol.offsets[proc] = dict(offsets)

        def resumed(result: Any) -> None:  # in the reader task, before the replay
            gap = history_gap(proc, offsets, result)
            if gap is not None:
                self._unroute(process)
                process._connection_lost(ProcwireConnectionError(gap))
            else:
                process._attached(Attachment.from_json(result), dict(self._protocol.offsets.get(proc, {})))

        async def attach() -> None:
            loop = asyncio.get_running_loop()
            while True:
                try:
                    await self._request("attach", resume_params(proc, offsets, process._output_format), resumed)
                    return
                except (ProcwireError, ProcwireConnectionError) as error:
                    if not worth_retrying(error, loop.time(), give_up_at):
                        failed = error
                        break
                await asyncio.sleep(RESUME_RETRY_DELAY)
                if self._reconnecting or self._procs.get(proc) is not process:
                    return  # dropped again (the next resume attaches it), or it was detached
            if not self._reconnecting:  # else the next resume attaches it (it is still routed)
                self._unroute(process)
                process._connection_lost(ProcwireConnectionError(resume_failed_message(proc, failed)))

        task = asyncio.create_task(attach())
        self._resuming.add(task)
        task.add_done_callback(self._resuming.discard)
