"""One WebSocket's frames: serialised writes, and reads in the handler.

simple-websocket writes with ``socket.send`` and ignores partial writes;
pongs, pings and close echoes are written by other code than ours.
:class:`Link` swaps the connection's socket for one whose ``send`` takes a
per-connection lock and calls ``sendall``, so every frame goes out whole and
frames never interleave.  Without compression, data frames are framed here
directly (server frames are unmasked, so a frame is a 2-10 byte header and
the payload); with compression they go through wsproto, under the same lock.

Reading happens in the connection's own greenlet (:meth:`Link.receive`),
not in simple-websocket's reader greenlet, which is never started (see
``NoReader``): one greenlet fewer per connection, no hand-over per message,
and while the session is busy nothing is read, so a client that floods us
meets TCP backpressure instead of an unbounded input buffer.  Frames are
still decoded by simple-websocket's own event handling (pongs, close echo,
message assembly, the size limit).
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import Any

from gevent.lock import RLock
from simple_websocket import ConnectionClosed
from wsproto.events import BytesMessage, Ping, TextMessage

from app import metrics

OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
FIN = 0x80


def frame_header(opcode: int, length: int) -> bytes:
    """The header of a final, unmasked server frame (RFC 6455 section 5.2)."""
    if length < 126:
        return struct.pack("!BB", FIN | opcode, length)
    if length < 1 << 16:
        return struct.pack("!BBH", FIN | opcode, 126, length)
    return struct.pack("!BBQ", FIN | opcode, 127, length)


class _SerialSocket:
    """The connection's socket, with ``send`` made whole and exclusive."""

    def __init__(self, sock: Any, lock: RLock) -> None:
        self._sock = sock
        self._lock = lock

    def send(self, data: bytes) -> int:
        with self._lock:
            sent = self._sock.send(data)  # usually all of it, without sendall's getsockopt
            if sent < len(data):
                self._sock.sendall(memoryview(data)[sent:])
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class Link:
    """Everything that writes to one WebSocket goes through here."""

    def __init__(self, ws: Any, compression: bool) -> None:
        self.ws = ws
        self._lock = RLock()
        self._compression = compression
        ws.sock = _SerialSocket(ws.sock, self._lock)

    def send_text(self, payload: bytes) -> None:
        """Send UTF-8 bytes as one text message."""
        self._send(OPCODE_TEXT, payload)

    def send_binary(self, header: bytes, payload: bytes) -> None:
        """Send ``header + payload`` as one binary message, joining them only once."""
        self._send(OPCODE_BINARY, payload, header)

    def receive(self) -> str | bytes:
        """The next message; ConnectionClosed when the connection is over."""
        ws = self.ws
        while not ws.input_buffer:
            if not ws.connected:
                raise ConnectionClosed(ws.close_reason, ws.close_message)
            try:
                data = ws.sock.recv(ws.receive_bytes)
            except OSError:
                data = b""
            if not data:
                ws.connected = False
                raise ConnectionClosed(ws.close_reason, ws.close_message)
            ws.ws.receive_data(data)
            ws.connected = ws._handle_events()  # answers pings, echoes a close, enforces the size limit
        return ws.input_buffer.pop(0)

    def ping(self) -> None:
        """Send a Ping; :meth:`receive` notes the Pong."""
        with contextlib.suppress(ConnectionClosed, OSError), self._lock:
            self.ws.sock.send(self.ws.ws.send(Ping()))

    def close(self, code: int, reason: str) -> None:
        """Send a Close frame and wake the handler blocked in ``receive``
        (it stops reading: a peer that never echoes the close cannot hold it)."""
        with contextlib.suppress(ConnectionClosed, OSError), self._lock:
            self.ws.close(code, reason)
        with contextlib.suppress(OSError):
            self.ws.sock.shutdown(socket.SHUT_RD)

    def _send(self, opcode: int, payload: bytes, prefix: bytes = b"") -> None:
        if not self.ws.connected:
            raise ConnectionClosed(self.ws.close_reason, self.ws.close_message)
        metrics.MESSAGES_OUT.inc()
        try:
            if self._compression:
                self._send_via_wsproto(opcode, prefix + payload)
            else:
                header = frame_header(opcode, len(prefix) + len(payload))
                self.ws.sock.send(b"".join((header, prefix, payload)))
        except OSError as error:
            raise ConnectionClosed(1006, str(error)) from None

    def _send_via_wsproto(self, opcode: int, payload: bytes) -> None:
        event = TextMessage(payload.decode("utf-8")) if opcode == OPCODE_TEXT else BytesMessage(payload)
        with self._lock:  # compression state must advance in send order
            self.ws.sock.send(self.ws.ws.send(event))


class NoReader:
    """Given to simple-websocket as its ``thread_class``: its reader thread is
    never started, since :meth:`Link.receive` reads in the handler."""

    def __init__(self, target: Any) -> None:
        self.name = "simple_websocket reader (unused)"

    def start(self) -> None:
        pass
