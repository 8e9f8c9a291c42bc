"""A process followed by the :class:`~procwire_client.AsyncClient`: the asyncio form of
:class:`~procwire_client.Process` (``async for stream, data in process``, ``await process.wait()``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from procwire_client.core.params import as_bytes, data_param
from procwire_client.core.protocol import BINARY_HEADER, copy_connection_error
from procwire_client.errors import ProcessExited, ProcwireConnectionError, ProcwireError, Timeout
from procwire_client.results import Attachment, ExitStatus

if TYPE_CHECKING:
    from procwire_client.asyncio_client import AsyncClient

_END = object()  # put in the output queue when the stream ends


class AsyncProcess:
    """A process started (or attached to) by an :class:`~procwire_client.AsyncClient`.

    ``async for stream, data in process`` yields ``("stdout" | "stderr", bytes)``
    (and ``("screen", bytes)`` first after an ``attach`` with ``snapshot``)
    until the process exits.  ``await process.write(data)`` returns once the
    server has taken the bytes: a refused write raises at once.
    """

    def __init__(
        self,
        client: AsyncClient,
        proc: int,
        *,
        pid: int | None = None,
        pgid: int | None = None,
        pty: bool = False,
        kept: bool = False,
        output_format: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.proc = proc
        self._kept = kept  # outlives a dropped connection: resumed by a reconnecting client
        self._output_format = output_format or {}  # binary/encoding asked for, asked again on resume
        self.pid = pid
        self.pgid = pgid
        self.pty = pty
        self.attachment: Attachment | None = None
        self.offsets: dict[str, int] = {"stdout": 0, "stderr": 0}  # end of what arrived, per stream
        self._items: asyncio.Queue[Any] = asyncio.Queue()
        self._ended = asyncio.Event()  # exit, detach or connection lost
        self._status: ExitStatus | None = None
        self._lost: ProcwireConnectionError | None = None
        self._is_detached = False
        self._drained = False
        self._write_lock = asyncio.Lock()  # one writer at a time: chunks stay in order

    def __repr__(self) -> str:
        state = "running" if self._status is None else f"exited {self._status.exit_code}"
        return f"<AsyncProcess proc={self.proc} pid={self.pid} {state}>"

    # -- from the client's reader task ------------------------------------------------

    def _output(self, stream: str, data: bytes, offset: int) -> None:
        self.offsets[stream] = offset + len(data)
        self._items.put_nowait((stream, data))

    def _screen(self, data: bytes, offset: int) -> None:
        self.offsets["stdout"] = offset
        self._items.put_nowait(("screen", data))

    def _attached(self, attachment: Attachment, offsets: dict[str, int]) -> None:
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
            self._items.put_nowait(_END)

    # -- state ------------------------------------------------------------------------

    @property
    def exit_status(self) -> ExitStatus | None:
        return self._status

    @property
    def returncode(self) -> int | None:
        return None if self._status is None else self._status.returncode

    @property
    def running(self) -> bool:
        return not self._ended.is_set()

    # -- output -----------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]:
        return self.iter_output()

    async def iter_output(self, timeout: float | None = None) -> AsyncIterator[tuple[str, bytes]]:
        """``(stream, bytes)`` as they arrive, until the exit (or a detach).

        Raises :class:`Timeout` when ``timeout`` (for the whole iteration)
        passes, :class:`ProcwireConnectionError` after the output that did
        arrive when the connection was lost.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._drained:
            try:
                left = None if deadline is None else max(0.0, deadline - loop.time())
                item = await asyncio.wait_for(self._items.get(), left)
            except TimeoutError:
                raise Timeout(f"process {self.proc} did not finish its output within {timeout} s") from None
            if item is _END:
                self._drained = True
                break
            yield item
        if self._lost is not None:
            raise copy_connection_error(self._lost)

    async def communicate(self, input: bytes | str | None = None, timeout: float | None = None) -> tuple[bytes, bytes]:
        """Write ``input`` (if any) and close stdin, then collect all output until the exit."""
        feeder = asyncio.create_task(self._feed(None if input is None else as_bytes(input)))
        collected = {"stdout": bytearray(), "stderr": bytearray()}
        try:
            async for stream, data in self.iter_output(timeout):
                collected.setdefault(stream, bytearray()).extend(data)
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
        return bytes(collected["stdout"]), bytes(collected["stderr"])

    async def _feed(self, data: bytes | None) -> None:
        """Write ``data`` and close stdin; a child that stops reading is not an error."""
        with contextlib.suppress(ProcwireError, ProcwireConnectionError):
            if data is not None:
                await self.write(data)
            if data is not None or not self.pty:
                await self.close_stdin()

    async def wait(self, timeout: float | None = None) -> ExitStatus:
        """The exit status, once the process exited and all its output arrived.

        Raises :class:`Timeout` when ``timeout`` passes first (the process runs
        on), :class:`ProcwireConnectionError` when the connection was lost.
        After :meth:`detach` it waits on the server instead.
        """
        if self._is_detached:
            return await self.client.wait(self.proc, timeout)
        try:
            await asyncio.wait_for(self._ended.wait(), timeout)
        except TimeoutError:
            raise Timeout(f"process {self.proc} is still running after {timeout} s") from None
        if self._status is None:
            if self._is_detached:
                return await self.client.wait(self.proc, timeout)
            raise copy_connection_error(self._lost) if self._lost else self.client._lost()
        return self._status

    # -- stdin ------------------------------------------------------------------------

    async def write(self, data: bytes | str, *, binary: bool = False) -> int:
        """Send bytes (a ``str`` as UTF-8) to stdin; the number of bytes, once the server took them.

        ``binary=True`` sends binary stdin frames (no JSON, no base64), then
        one empty ``write`` per half window to learn that they were taken.
        Raises :class:`ProcessExited` (exited, or stdin closed),
        :class:`LimitExceeded` (stdin buffer full), :class:`NoSuchProcess`,
        :class:`ProcwireConnectionError`.
        """
        payload = as_bytes(data)
        async with self._write_lock:
            if self._status is not None:
                raise ProcessExited(f"process {self.proc} has exited: its stdin takes no more bytes")
            client = self.client
            step = client.write_chunk
            if binary:
                step = min(step, client.max_message_bytes - BINARY_HEADER.size)
            unconfirmed = 0
            for start in range(0, len(payload), step):
                chunk = payload[start : start + step]
                if binary:
                    await client._send_stdin(self.proc, chunk)
                    unconfirmed += len(chunk)
                    if unconfirmed >= client.write_window // 2:
                        await client.call("write", {"proc": self.proc, "data": ""})
                        unconfirmed = 0
                else:
                    await client.call("write", {"proc": self.proc, **data_param(chunk, client.max_message_bytes)})
            if unconfirmed:
                await client.call("write", {"proc": self.proc, "data": ""})
        return len(payload)

    async def close_stdin(self) -> None:
        """End of file on stdin, after the bytes written before (on a pty: ^D).

        Raises :class:`ProcessExited` (exited, or closed already).
        """
        async with self._write_lock:
            await self.client.call("close_stdin", {"proc": self.proc})

    # -- control ----------------------------------------------------------------------

    async def signal(self, sig: Any, *, group: bool = True) -> None:
        await self.client.signal(self.proc, sig, group=group)

    async def kill(self) -> None:
        await self.client.kill(self.proc)

    async def stop(self, signal: Any = "SIGTERM", grace: float | None = None) -> ExitStatus:
        return await self.client.stop(self.proc, signal, grace)

    async def resize(self, rows: int, cols: int) -> None:
        await self.client.resize(self.proc, rows, cols)

    async def detach(self) -> None:
        """Stop receiving the output here (iteration ends); the process runs on."""
        await self.client.detach(self.proc)

    async def release(self) -> None:
        await self.client.release(self.proc)

    async def __aenter__(self) -> AsyncProcess:
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Kill the process if it still runs (and wait a little for its exit)."""
        if self._ended.is_set() or self.client.closed:
            return
        with contextlib.suppress(ProcwireError, ProcwireConnectionError, TimeoutError):
            await self.kill()
            await asyncio.wait_for(self._ended.wait(), 10.0)
