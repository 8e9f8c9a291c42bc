"""The asyncio client's connection, on the ``websockets`` library's asyncio implementation.

On the same sans-I/O :class:`~procwire_client.core.Protocol` as the sync
client: one reader task turns frames into events; an answer resolves the
future of its request, output and exits go to the
:class:`~procwire_client.AsyncProcess` they belong to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Self

import websockets
from websockets.asyncio.client import ClientConnection, connect

from procwire_client.async_process import AsyncProcess
from procwire_client.connection import close_message, resolve_url_and_token
from procwire_client.core import Answered, Event, Failed, Protocol
from procwire_client.core.protocol import ProtocolError, copy_connection_error
from procwire_client.core.resume import Reconnect
from procwire_client.errors import AuthenticationError, ProcwireConnectionError, ProcwireError
from procwire_client.handle import ProcessEvent, deliver

Callback = Callable[[Any], None]


class AsyncConnection:
    """The socket, the reader task and the routing of events; :class:`~procwire_client.AsyncClient` adds the methods."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        connect_timeout: float = 10.0,
        headers: Sequence[tuple[str, str]] = (),
        reconnect: bool | Reconnect = False,
    ) -> None:
        self.url, self._token = resolve_url_and_token(url, token)
        self._connect_timeout = connect_timeout
        self._headers = list(headers)
        self.reconnect = Reconnect.from_option(reconnect)
        self.reconnects = 0  # how many times the connection was made again
        self._reconnecting = False
        self._resuming: set[asyncio.Task[None]] = set()  # re-attaches in flight (kept referenced)
        self._protocol = Protocol()
        self._calls: dict[int, tuple[asyncio.Future[Any], Callback | None]] = {}
        self._procs: dict[int, AsyncProcess] = {}
        self._handles: weakref.WeakValueDictionary[int, AsyncProcess] = weakref.WeakValueDictionary()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed: ProcwireConnectionError | None = None
        self._closing = False
        self.hello: dict[str, Any] = {}
        self.stray_errors: list[ProcwireError] = []

    # -- connection -------------------------------------------------------------------

    async def connect(self) -> Self:
        """Open the connection and read the server's hello.

        Raises :class:`AuthenticationError` (wrong token),
        :class:`ProcwireConnectionError` (refused, unreachable, not procwire).
        """
        self._ws = await self._open(self._protocol)
        self.hello = self._protocol.hello or {}
        self._reader = asyncio.create_task(self._read_loop(), name="procwire-reader")
        return self

    async def _open(self, protocol: Protocol) -> ClientConnection:
        """A new connection whose hello ``protocol`` has read."""
        headers = list(self._headers)
        if self._token:
            headers.append(("Authorization", f"Bearer {self._token}"))
        try:
            ws = await connect(
                self.url,
                additional_headers=headers,
                open_timeout=self._connect_timeout,
                max_size=None,
                compression=None,
                ping_interval=None,
            )
        except websockets.exceptions.InvalidStatus as error:
            raise self._refused(error) from None
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as error:
            detail = str(error) or type(error).__name__
            raise ProcwireConnectionError(f"cannot connect to {self.url}: {detail}") from None
        try:
            await self._read_hello(ws, protocol)
        except asyncio.CancelledError:
            ws.transport.abort()  # close() is not waiting for a Close handshake
            raise
        except BaseException:
            await ws.close()
            raise
        return ws

    def _refused(self, error: websockets.exceptions.InvalidStatus) -> ProcwireConnectionError:
        status = error.response.status_code
        detail = ""
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(error.response.body or b"{}").get("error", "")
        detail = detail or error.response.reason_phrase or "handshake refused"
        cls = AuthenticationError if status == 401 else ProcwireConnectionError
        return cls(f"{self.url} refused the connection: HTTP {status}: {detail}", status=status)

    async def _read_hello(self, ws: ClientConnection, protocol: Protocol) -> None:
        try:
            first = await asyncio.wait_for(ws.recv(), self._connect_timeout)
        except (TimeoutError, websockets.exceptions.WebSocketException) as error:
            raise ProcwireConnectionError(f"no hello from {self.url}: {error or type(error).__name__}") from None
        try:
            if not isinstance(first, str):
                raise ProtocolError("binary first")
            protocol.receive_text(first)
        except ProtocolError:
            raise ProcwireConnectionError(f"{self.url} is not a procwire server (no hello)") from None

    @property
    def client_id(self) -> str | None:
        return self.hello.get("client_id")

    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def max_message_bytes(self) -> int:
        return self._protocol.limits.max_message_bytes

    @property
    def write_chunk(self) -> int:
        return self._protocol.limits.write_chunk

    @property
    def write_window(self) -> int:
        return self._protocol.limits.write_window

    async def close(self) -> None:
        """Close the connection (code 1000) and wait for the reader task to end.
        A reader reconnecting is cancelled: its pause, or a handshake that may be
        held for ``connect_timeout``, is not worth waiting for."""
        if self._closing:
            return
        self._closing = True
        for task in list(self._resuming):  # re-attaches waiting to ask again
            task.cancel()
        if self._reconnecting and self._reader is not None:
            self._reader.cancel()
        elif self._ws is not None:
            with contextlib.suppress(websockets.exceptions.WebSocketException, OSError):
                await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._shutdown(ProcwireConnectionError("the connection is closed"))

    def _lost(self) -> ProcwireConnectionError:
        if self._closed is None and self._reconnecting:
            return ProcwireConnectionError(f"the connection to {self.url} dropped; reconnecting")
        return copy_connection_error(self._closed or ProcwireConnectionError("the connection is closed"))

    def _shutdown(self, reason: ProcwireConnectionError) -> None:
        if self._closed is None:
            self._closed = reason
        self._dispatch(self._protocol.connection_lost(self._closed))
        processes = list(self._procs.values())
        self._procs.clear()
        for process in processes:
            process._connection_lost(self._lost())

    # -- reading ----------------------------------------------------------------------

    async def _read_loop(self) -> None:
        """Read until the connection ends; then resume on a new one when ``reconnect`` says so."""
        while True:
            assert self._ws is not None
            reason = await self._read_frames(self._ws)
            if self._closing or not await self._resume(reason):
                self._shutdown(reason)
                return

    async def _resume(self, reason: ProcwireConnectionError) -> bool:
        """Overridden where reconnecting is implemented: whether the connection is back."""
        return False

    async def _read_frames(self, ws: ClientConnection) -> ProcwireConnectionError:
        """Read and handle frames until the connection ends; why it ended."""
        reason = ProcwireConnectionError("the connection is closed")
        try:
            async for message in ws:
                if isinstance(message, str):
                    self._dispatch(self._protocol.receive_text(message))
                else:
                    self._dispatch(self._protocol.receive_binary(message))
        except websockets.exceptions.ConnectionClosedError:
            pass
        if not self._closing:
            received = ws.protocol.close_rcvd
            code = received.code if received is not None else None
            text = received.reason if received is not None else ""
            message = close_message(code, text) if received is not None else f"connection to {self.url} lost"
            reason = ProcwireConnectionError(message, close_code=code, close_reason=text)
        return reason

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Answered | Failed):
                future, callback = self._calls.pop(event.id, (None, None))
                if future is None or future.done():
                    continue
                if isinstance(event, Answered):
                    if callback is not None:
                        callback(event.result)
                    future.set_result(event.result)
                else:
                    future.set_exception(event.error)
            elif isinstance(event, ProcessEvent):
                deliver(event, self._procs, self._handles, self.stray_errors)

    # -- sending ----------------------------------------------------------------------

    async def _send(self, frame: str | bytes) -> None:
        if self._closed is not None or self._closing or self._reconnecting or self._ws is None:
            raise self._lost()
        try:
            await self._ws.send(frame)
        except websockets.exceptions.WebSocketException as error:
            raise ProcwireConnectionError(f"connection lost: {error or type(error).__name__}") from None

    async def _send_stdin(self, proc: int, data: bytes) -> None:
        await self._send(self._protocol.stdin_frame(proc, data))

    def _request(
        self, method: str, params: Mapping[str, Any] | None = None, callback: Callback | None = None
    ) -> Awaitable[Any]:
        """Send a request; an awaitable of its result.  ``callback(result)`` runs in the
        reader task before any later frame is handled (a ``start`` routes its process)."""
        return self._answer_of(self._register(method, params, callback))

    async def _answer_of(self, sending: tuple[int, str, asyncio.Future[Any]]) -> Any:
        return await (await self._sent(*sending))

    async def _send_request(self, method: str, params: Mapping[str, Any] | None = None) -> asyncio.Future[Any]:
        """Send a request without waiting for its answer: the future of its result (pipelined writes)."""
        return await self._sent(*self._register(method, params, None))

    def _register(
        self, method: str, params: Mapping[str, Any] | None, callback: Callback | None
    ) -> tuple[int, str, asyncio.Future[Any]]:
        if self._closed is not None or self._reconnecting:
            raise self._lost()
        request_id, frame = self._protocol.request(method, params)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[request_id] = (future, callback)
        return request_id, frame, future

    async def _sent(self, request_id: int, frame: str, future: asyncio.Future[Any]) -> asyncio.Future[Any]:
        try:
            await self._send(frame)
        except BaseException:
            self._protocol.cancel(request_id)
            self._calls.pop(request_id, None)
            raise
        return future

    async def call(self, method: str, params: Mapping[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """Send any request and return its result (raises the typed error of an error answer)."""
        return await asyncio.wait_for(self._request(method, params), timeout)

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Send a notification (a refused ``write`` lands in :attr:`stray_errors`)."""
        await self._send(self._protocol.notification(method, params))

    # -- routing ----------------------------------------------------------------------

    def _route(self, process: AsyncProcess) -> AsyncProcess | None:
        if self._closed is not None:
            raise self._lost()
        previous = self._procs.get(process.proc)
        self._procs[process.proc] = process
        self._handles[process.proc] = process
        return previous

    def _unroute(self, process: AsyncProcess) -> None:
        if self._procs.get(process.proc) is process:
            del self._procs[process.proc]
