"""A process followed by the :class:`~procwire_client.AsyncClient`: the asyncio form of
:class:`~procwire_client.Process` (``async for stream, data in process``, ``await process.wait()``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from procwire_client.core.params import as_bytes, data_param
from procwire_client.core.protocol import BINARY_HEADER, copy_connection_error
from procwire_client.errors import ProcessExited, ProcwireConnectionError, ProcwireError, Timeout
from procwire_client.handle import END, ProcessHandle
from procwire_client.results import ExitStatus

if TYPE_CHECKING:
    from procwire_client.asyncio_client import AsyncClient


class AsyncProcess(ProcessHandle):
    """A process started (or attached to) by an :class:`~procwire_client.AsyncClient`.

    ``async for stream, data in process`` yields ``("stdout" | "stderr", bytes)``
    (and ``("screen", bytes)`` first after an ``attach`` with ``snapshot``)
    until the process exits.  ``await process.write(data)`` returns once the
    server has taken the bytes: a refused write raises at once.
    """

    _ended: asyncio.Event

    def __init__(self, client: AsyncClient, proc: int, **handle: Any) -> None:
        super().__init__(proc, **handle)
        self.client = client
        self._items: asyncio.Queue[Any] = asyncio.Queue()
        self._ended = asyncio.Event()  # exit, detach or connection lost
        self._write_lock = asyncio.Lock()  # one writer at a time: chunks stay in order
        self._flow = asyncio.Event()  # set when a write is answered (or the stream ends)
        self._in_flight = 0  # unanswered stdin bytes
        self._stdin_error: ProcwireError | None = None  # refused, not raised yet
        self.stdin_error: ProcwireError | None = None  # the last refused write, kept for inspection

    def _push(self, item: Any) -> None:
        self._items.put_nowait(item)

    def _ended_now(self) -> None:
        self._flow.set()

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
            if item is END:
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
        self._raise_stdin_error()
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
        self._raise_stdin_error()
        return self._status

    # -- stdin ------------------------------------------------------------------------

    def _raise_stdin_error(self) -> None:
        error, self._stdin_error = self._stdin_error, None
        if error is not None:
            raise error

    async def _until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds (checked again whenever a write is answered)."""
        while not condition():
            self._flow.clear()
            await self._flow.wait()

    async def write(self, data: bytes | str, *, timeout: float | None = None, binary: bool = False) -> int:
        """Send bytes (a ``str`` as UTF-8) to stdin; the number of bytes.

        Pipelined as in the sync client: it returns once the bytes are sent,
        waiting only while more than the server's stdin window is unanswered.
        ``binary=True`` sends binary stdin frames (no JSON, no base64).
        Raises :class:`ProcessExited` (its exit arrived, or an earlier write
        was refused because it exited or its stdin is closed),
        :class:`LimitExceeded` (an earlier write refused for size),
        :class:`Timeout` (it did not read within ``timeout``),
        :class:`ProcwireConnectionError`.  A write refused later is raised by
        the next :meth:`write`, :meth:`flush`, :meth:`close_stdin` or :meth:`wait`.
        """
        try:
            async with asyncio.timeout(timeout):
                return await self._write(as_bytes(data), binary)
        except TimeoutError:
            raise Timeout(f"process {self.proc} did not read its stdin within {timeout} s") from None

    async def _write(self, payload: bytes, binary: bool) -> int:
        async with self._write_lock:
            self._raise_stdin_error()
            if self._status is not None:
                raise ProcessExited(f"process {self.proc} has exited: its stdin takes no more bytes")
            client = self.client
            step = client.write_chunk
            if binary:
                step = min(step, client.max_message_bytes - BINARY_HEADER.size)
            unconfirmed = 0
            for start in range(0, len(payload), step):
                chunk = payload[start : start + step]
                if binary and unconfirmed and unconfirmed + len(chunk) > client.write_window // 2:
                    await self._send_write(b"", released=unconfirmed)
                    unconfirmed = 0
                await self._reserve(len(chunk))
                if binary:
                    await client._send_stdin(self.proc, chunk)
                    unconfirmed += len(chunk)
                else:
                    await self._send_write(chunk)
            if unconfirmed:
                await self._send_write(b"", released=unconfirmed)
        return len(payload)

    async def _reserve(self, size: int) -> None:
        """Wait until ``size`` more unanswered bytes stay within the server's stdin window."""
        window = self.client.write_window
        await self._until(
            lambda: (
                not self._in_flight
                or self._in_flight + size <= window
                or self._stdin_error is not None
                or self.client.closed
            )
        )
        if self.client.closed:
            raise self.client._lost()
        self._raise_stdin_error()
        self._in_flight += size

    async def _send_write(self, chunk: bytes, released: int = 0) -> None:
        """A ``write`` request; its answer frees its bytes (and ``released`` earlier ones) from the window."""
        size = len(chunk) + released
        params = {"proc": self.proc, **data_param(chunk, self.client.max_message_bytes)}
        answer = await self.client._send_request("write", params)
        answer.add_done_callback(lambda done: self._write_answered(done, size))

    def _write_answered(self, answer: asyncio.Future[Any], size: int) -> None:
        self._in_flight -= size
        error = None if answer.cancelled() else answer.exception()
        if isinstance(error, ProcwireError):
            self._stdin_failed(error)
        self._flow.set()

    def _stdin_failed(self, error: ProcwireError) -> None:
        self.stdin_error = error
        if self._stdin_error is None:
            self._stdin_error = error
        self._flow.set()

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every write was answered; raise the first refused one."""
        try:
            async with asyncio.timeout(timeout):
                await self._until(lambda: not self._in_flight or self.client.closed)
        except TimeoutError:
            raise Timeout(f"process {self.proc} did not read its stdin within {timeout} s") from None
        self._raise_stdin_error()

    async def close_stdin(self) -> None:
        """End of file on stdin, after the bytes written before (on a pty: ^D).

        Raises :class:`ProcessExited` (exited, or closed already) and writes refused before.
        """
        async with self._write_lock:
            self._raise_stdin_error()
            await self.client.call("close_stdin", {"proc": self.proc})
            with contextlib.suppress(Timeout):
                await self.flush(timeout=5.0)

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
