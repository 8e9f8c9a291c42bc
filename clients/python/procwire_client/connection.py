"""The sync client's connection: one WebSocket (``websocket-client``), one reader thread.

The reader thread reads every frame, hands it to the sans-I/O
:class:`~procwire_client.core.Protocol` and acts on the events it returns:
an answer wakes the request that waits for it, output and exits go to the
:class:`~procwire_client.process.Process` they belong to.  Every write to the
socket goes through one lock.  Output is queued per process without bound, so
a process's output never holds up the answers or another process's output.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import websocket
from websocket import ABNF

from procwire_client.core import Answered, Event, Failed, Protocol
from procwire_client.core.protocol import ProtocolError, copy_connection_error
from procwire_client.core.resume import Reconnect
from procwire_client.errors import AuthenticationError, ProcwireConnectionError, ProcwireError, Timeout
from procwire_client.handle import ProcessEvent, deliver

if TYPE_CHECKING:
    from procwire_client.process import Process

DEFAULT_URL = "ws://127.0.0.1:9999/ws"
JOIN_POLL = 0.05  # seconds between close()'s attempts to interrupt a connection being opened


class Call:
    """A request waiting for its answer; ``callback`` runs in the reader thread first
    (before any later frame is handled: a ``start``'s callback routes the process
    before its first output)."""

    __slots__ = ("callback", "done", "error", "method", "result")

    def __init__(self, method: str, callback: Callable[[Call], None] | None = None) -> None:
        self.method = method
        self.callback = callback
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        if self.done.is_set():
            return
        self.result, self.error = result, error
        try:
            if self.callback is not None:
                self.callback(self)
        finally:
            self.done.set()

    def get(self, timeout: float | None = None) -> Any:
        if not self.done.wait(timeout):
            raise Timeout(f"no answer to {self.method} within {timeout} s")
        if self.error is not None:
            raise self.error
        return self.result


def close_message(code: int | None, reason: str) -> str:
    if code is None:
        return "the server closed the connection"
    text = f"the server closed the connection ({code}"
    return text + (f" {reason})" if reason else ")")


def resolve_url_and_token(url: str | None, token: str | None) -> tuple[str, str | None]:
    """``url`` and ``token``, defaulting to ``$PROCWIRE_URL`` (else the local server) and ``$PROCWIRE_TOKEN``."""
    if token is None:
        token = os.environ.get("PROCWIRE_TOKEN")
    return url or os.environ.get("PROCWIRE_URL") or DEFAULT_URL, token


class Connection:
    """The socket, the reader thread and the routing of events; :class:`~procwire_client.Client` adds the methods."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        connect_timeout: float = 10.0,
        headers: Sequence[str] = (),
        reconnect: bool | Reconnect = False,
    ) -> None:
        self.url, token = resolve_url_and_token(url, token)
        self._token, self._connect_timeout, self._headers = token, connect_timeout, list(headers)
        self.reconnect = Reconnect.from_option(reconnect)
        self.reconnects = 0  # how many times the connection was made again
        self._reconnecting = False
        self._closing_event = threading.Event()  # wakes a reconnect's pause when closing
        self._lock = threading.RLock()  # the protocol state, pending calls, routed processes
        self._send_lock = threading.Lock()  # every frame written to the socket
        self._protocol = Protocol()
        self._calls: dict[int, Call] = {}
        self._procs: dict[int, Process] = {}  # whose output this connection receives
        self._handles: weakref.WeakValueDictionary[int, Process] = weakref.WeakValueDictionary()
        self._closed: ProcwireConnectionError | None = None
        self._closing = False
        self._opening: websocket.WebSocket | None = None  # a connection being opened (for close() to interrupt)
        self.stray_errors: list[ProcwireError] = []  # id-null errors no process could be blamed for
        self._ws = self._open(self._protocol)
        self._set_hello()
        self._reader = threading.Thread(target=self._read_loop, name="procwire-reader", daemon=True)
        self._reader.start()

    # -- connecting -----------------------------------------------------------------

    def _connect(self, ws: websocket.WebSocket, token: str | None, timeout: float, headers: list[str]) -> None:
        if token:
            headers.append(f"Authorization: Bearer {token}")
        ws.settimeout(timeout)
        try:
            ws.connect(self.url, header=headers)
        except websocket.WebSocketBadStatusException as error:
            raise self._refused(error) from None
        except (OSError, ValueError, websocket.WebSocketException) as error:
            detail = str(error) or type(error).__name__
            raise ProcwireConnectionError(f"cannot connect to {self.url}: {detail}") from None

    def _refused(self, error: websocket.WebSocketBadStatusException) -> ProcwireConnectionError:
        status = error.status_code
        detail = ""
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(error.resp_body or b"{}").get("error", "")
        detail = detail or error.status_message or "handshake refused"
        cls = AuthenticationError if status == 401 else ProcwireConnectionError
        return cls(f"{self.url} refused the connection: HTTP {status}: {detail}", status=status)

    def _open(self, protocol: Protocol) -> websocket.WebSocket:
        """A new socket whose hello ``protocol`` has read.  Until then it is
        ``_opening``: close() interrupts it rather than wait for the handshake."""
        ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=True)
        with self._lock:
            if self._closing:
                raise ProcwireConnectionError("the connection is closed")
            self._opening = ws
        try:
            self._connect(ws, self._token, self._connect_timeout, list(self._headers))
            self._read_hello(ws, protocol)
        except BaseException:
            ws.shutdown()
            raise
        finally:
            with self._lock:
                self._opening = None
        ws.settimeout(None)
        return ws

    def _read_hello(self, ws: websocket.WebSocket, protocol: Protocol) -> None:
        try:
            opcode, data = ws.recv_data()
        except (OSError, websocket.WebSocketException) as error:
            raise ProcwireConnectionError(f"no hello from {self.url}: {error or type(error).__name__}") from None
        try:
            if opcode != ABNF.OPCODE_TEXT:
                raise ProtocolError("binary first")
            protocol.receive_text(data)
        except ProtocolError:
            raise ProcwireConnectionError(f"{self.url} is not a procwire server (no hello)") from None

    def _set_hello(self) -> None:
        self.hello: dict[str, Any] = self._protocol.hello or {}
        limits = self._protocol.limits
        self.max_message_bytes = limits.max_message_bytes
        self.write_chunk = limits.write_chunk
        self.write_window = limits.write_window

    @property
    def client_id(self) -> str | None:
        return self.hello.get("client_id")

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def close(self, timeout: float = 5.0) -> None:
        """Close the connection (code 1000) and wait for the reader to end."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        self._closing_event.set()
        in_reader = threading.current_thread() is self._reader
        if self._closed is None:
            with contextlib.suppress(OSError, websocket.WebSocketException), self._send_lock:
                self._ws.send(struct.pack("!H", 1000), ABNF.OPCODE_CLOSE)
            if not in_reader:
                self._join_reader(timeout)
        self._ws.abort()  # wakes the reader if it still waits
        if not in_reader:
            self._join_reader(1.0)
        self._ws.shutdown()
        self._shutdown(ProcwireConnectionError("the connection is closed"))

    def _join_reader(self, timeout: float) -> None:
        """Wait for the reader thread to end, interrupting any connection it is
        opening (a reconnect's handshake may be held for ``connect_timeout``).
        A TCP connect still in progress cannot be reached; the reader drops
        what it gets once it returns."""
        deadline = time.monotonic() + timeout
        while self._reader.is_alive() and (left := deadline - time.monotonic()) > 0:
            opening = self._opening
            sock = opening.sock if opening is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # the reader's recv in the handshake returns
            self._reader.join(min(left, JOIN_POLL))

    def _lost(self) -> ProcwireConnectionError:
        """A fresh exception saying why the connection is gone."""
        if self._closed is None and self._reconnecting:
            return ProcwireConnectionError(f"the connection to {self.url} dropped; reconnecting")
        return copy_connection_error(self._closed or ProcwireConnectionError("the connection is closed"))

    def _shutdown(self, reason: ProcwireConnectionError) -> None:
        """The connection is gone: fail every waiting request and end every stream."""
        with self._lock:
            if self._closed is None:
                self._closed = reason
            failed = self._protocol.connection_lost(self._closed)
            processes = list(self._procs.values())
            self._procs.clear()
        self._dispatch(failed)
        for process in processes:
            process._connection_lost(self._lost())

    # -- sending --------------------------------------------------------------------

    def _send_frame(self, payload: str | bytes, opcode: int) -> None:
        with self._send_lock:
            if self._closed is not None or self._closing or self._reconnecting:
                raise self._lost()
            try:
                self._ws.send(payload, opcode)
            except (OSError, websocket.WebSocketException) as error:
                raise ProcwireConnectionError(f"connection lost: {error or type(error).__name__}") from None

    def _request(
        self, method: str, params: Mapping[str, Any] | None = None, callback: Callable[[Call], None] | None = None
    ) -> Call:
        call = Call(method, callback)
        with self._lock:
            if self._closed is not None or self._reconnecting:
                raise self._lost()
            request_id, frame = self._protocol.request(method, params)
            self._calls[request_id] = call
        try:
            self._send_frame(frame, ABNF.OPCODE_TEXT)
        except BaseException as error:
            with self._lock:
                self._protocol.cancel(request_id)
                self._calls.pop(request_id, None)
            call.finish(error=error)
            raise
        return call

    def _send_stdin(self, proc: int, data: bytes) -> None:
        with self._lock:
            frame = self._protocol.stdin_frame(proc, data)
        self._send_frame(frame, ABNF.OPCODE_BINARY)

    def call(self, method: str, params: Mapping[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """Send any request and return its result (raises the typed error of an error answer).

        Raises :class:`Timeout` when no answer came within ``timeout`` and
        :class:`ProcwireConnectionError` when the connection is gone.
        """
        return self._request(method, params).get(timeout)

    def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Send a notification: never answered, except a refused ``write``, whose error
        (id null) lands on that process (see :attr:`Process.stdin_error`) or in
        :attr:`stray_errors`."""
        with self._lock:
            frame = self._protocol.notification(method, params)
        self._send_frame(frame, ABNF.OPCODE_TEXT)

    # -- reading --------------------------------------------------------------------

    def _read_loop(self) -> None:
        """Read until the connection ends; then resume on a new one when ``reconnect`` says so."""
        while True:
            reason = self._read_frames(self._ws)
            if self._closing or not self._resume(reason):
                self._shutdown(reason)
                return

    def _resume(self, reason: ProcwireConnectionError) -> bool:
        """Overridden where reconnecting is implemented: whether the connection is back."""
        return False

    def _read_frames(self, ws: websocket.WebSocket) -> ProcwireConnectionError:
        """Read and handle frames until the connection ends; why it ended."""
        reason: ProcwireConnectionError | None = None
        try:
            while True:
                frame = ws.recv_frame()
                opcode = frame.opcode
                if opcode in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY, ABNF.OPCODE_CONT):
                    ws.cont_frame.validate(frame)
                    ws.cont_frame.add(frame)
                    if ws.cont_frame.is_fire(frame):
                        opcode, whole = ws.cont_frame.extract(frame)
                        self._receive(opcode, whole.data)
                elif opcode == ABNF.OPCODE_PING:
                    with self._send_lock:
                        ws.send(frame.data, ABNF.OPCODE_PONG)
                elif opcode == ABNF.OPCODE_CLOSE:
                    return self._on_close(bytes(frame.data))
        except Exception as error:
            if self._closing:
                reason = ProcwireConnectionError("the connection is closed")
            else:
                detail = str(error) or type(error).__name__
                reason = ProcwireConnectionError(f"connection to {self.url} lost: {detail}")
        return reason or ProcwireConnectionError("the connection is closed")

    def _receive(self, opcode: int, data: bytes) -> None:
        with self._lock:
            if opcode == ABNF.OPCODE_TEXT:
                events = self._protocol.receive_text(data)
            else:
                events = self._protocol.receive_binary(data)
        self._dispatch(events)

    def _on_close(self, payload: bytes) -> ProcwireConnectionError:
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        reason = payload[2:].decode("utf-8", "replace")
        if not self._closing:  # echo the server's Close, as RFC 6455 asks
            with contextlib.suppress(OSError, websocket.WebSocketException), self._send_lock:
                self._ws.send(payload[:2], ABNF.OPCODE_CLOSE)
            return ProcwireConnectionError(close_message(code, reason), close_code=code, close_reason=reason)
        return ProcwireConnectionError("the connection is closed", close_code=code, close_reason=reason)

    def _dispatch(self, events: list[Event]) -> None:
        """Act on the core's events, in order (in the reader thread, or at shutdown)."""
        for event in events:
            if isinstance(event, Answered | Failed):
                with self._lock:
                    call = self._calls.pop(event.id, None)
                if call is not None:
                    call.finish(*((event.result, None) if isinstance(event, Answered) else (None, event.error)))
            elif isinstance(event, ProcessEvent):
                deliver(event, self._procs, self._handles, self.stray_errors, self._lock)

    # -- routing --------------------------------------------------------------------

    def _route(self, process: Process) -> Process | None:
        """Send ``proc``'s output to ``process`` from now on; the previous receiver, if any."""
        with self._lock:
            if self._closed is not None:
                raise self._lost()
            previous = self._procs.get(process.proc)
            self._procs[process.proc] = process
            self._handles[process.proc] = process
        return previous

    def _unroute(self, process: Process) -> None:
        with self._lock:
            if self._procs.get(process.proc) is process:
                del self._procs[process.proc]
