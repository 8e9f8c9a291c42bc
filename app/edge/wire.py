"""One WebSocket's frames: serialised writes, and reads in the handler.

simple-websocket writes with ``socket.send`` and ignores partial writes;
pongs, pings and close echoes are written by other code than ours.
:class:`Link` swaps the connection's socket for one whose ``send`` takes a
per-connection lock and calls ``sendall``, so every frame goes out whole and
frames never interleave.  Without compression, data frames are framed here
directly (server frames are unmasked, so a frame is a 2-10 byte header and
the payload, and a large payload goes out behind its header with one
``sendmsg``, uncopied); with compression they go through wsproto, under the same lock.

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
from typing import Any, NoReturn

from gevent import get_hub
from gevent.lock import RLock
from simple_websocket import ConnectionClosed
from wsproto.events import BytesMessage, Ping, TextMessage

from app import metrics
from app.edge.frames import (
    OPCODE_BINARY,
    OPCODE_CONTINUATION,
    OPCODE_TEXT,
    FrameHeader,
    frame_header,
    parse_frame_header,
    unmask,
)
from app.edge.linger import linger

CLOSE_MESSAGE_TOO_BIG = 1009
GATHER_FROM = 16 * 1024  # a payload this large is sent from where it is (sendmsg), not copied behind its header


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

    def send_parts(self, head: bytes, body: bytes) -> None:
        """``head + body`` as one write, without copying a large body into a joined buffer."""
        with self._lock:
            sent = self._sock.sendmsg((head, body))
            if sent < len(head):
                self._sock.sendall(memoryview(head)[sent:])
                sent = len(head)
            if sent < len(head) + len(body):
                self._sock.sendall(memoryview(body)[sent - len(head) :])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class Link:
    """Everything that writes to one WebSocket goes through here."""

    def __init__(self, ws: Any, compression: bool) -> None:
        self.ws = ws
        self._lock = RLock()
        self._compression = compression
        self._unread = bytearray()
        self._in_fragmented_message = False
        self._message_bytes = 0  # payload bytes of the fragmented message so far
        self._drained = False  # the last recv took all the socket held: wait before the next, not after an EAGAIN
        self._readable: Any = None  # a watcher of our own on the socket, for that wait
        self._linger = False  # closed for the client's misbehaviour: drain before the socket closes
        ws.sock = _SerialSocket(ws.sock, self._lock)

    def send_text(self, payload: bytes) -> None:
        """Send UTF-8 bytes as one text message."""
        self._send(OPCODE_TEXT, payload)

    def send_binary(self, header: bytes, payload: bytes) -> None:
        """Send ``header + payload`` as one binary message, joining them only once."""
        self._send(OPCODE_BINARY, payload, header)

    def receive(self) -> str | bytes:
        """The next message; ConnectionClosed when the connection is over.

        Whole, unfragmented data messages (nearly all of them) are decoded
        here; every other frame (control frames, fragments, compressed or
        malformed ones) goes, whole and in order, to simple-websocket's own
        event handling: it answers pings, echoes a close, assembles
        fragments, enforces the size limit and refuses bad UTF-8 with 1007.
        """
        ws = self.ws
        while not ws.input_buffer:
            if not ws.connected:
                raise ConnectionClosed(ws.close_reason, ws.close_message)
            header = parse_frame_header(self._unread)
            if header is not None and self._too_big(header):
                self.close_for_cause(CLOSE_MESSAGE_TOO_BIG, "Message is too big")
            if header is not None and len(self._unread) >= header.size:
                frame = bytes(self._unread[: header.size])
                del self._unread[: header.size]
                self._take(header, frame)
                continue
            self._unread += self._recv()
        return ws.input_buffer.pop(0)

    def _recv(self) -> bytes:
        if self._drained:
            self._wait_readable()
        try:
            data = self.ws.sock.recv(self.ws.receive_bytes)
        except OSError:
            data = b""
        self._drained = len(data) < self.ws.receive_bytes
        if not data:
            self.ws.connected = False
            raise ConnectionClosed(self.ws.close_reason, self.ws.close_message)
        return data

    def _wait_readable(self) -> None:
        if self._readable is None:
            self._readable = get_hub().loop.io(self.ws.sock.fileno(), 1)
        get_hub().wait(self._readable)

    def release(self) -> None:
        """The connection is over: drop the socket watcher before the socket is closed."""
        if self._readable is not None:
            self._readable.close()
            self._readable = None

    def _too_big(self, header: FrameHeader) -> bool:
        """Over the message size limit, in bytes: a fragment counts with the fragments before it
        (simple-websocket adds up decoded characters, so text of multi-byte characters passed at 4x)."""
        limit = self.ws.max_message_size
        size = header.payload_length
        if header.opcode == OPCODE_CONTINUATION and self._in_fragmented_message:
            size += self._message_bytes
        return bool(limit) and size > limit

    def _take(self, header: FrameHeader, frame: bytes) -> None:
        if header.whole_data_message and not self._in_fragmented_message:
            assert header.mask is not None
            payload = unmask(frame[header.payload_start :], header.mask)
            if header.opcode == OPCODE_BINARY:
                self.ws.input_buffer.append(payload)
                return
            try:
                self.ws.input_buffer.append(payload.decode("utf-8"))
                return
            except UnicodeDecodeError:
                pass  # simple-websocket closes with 1007
        if header.opcode in (OPCODE_CONTINUATION, OPCODE_TEXT, OPCODE_BINARY):
            so_far = self._message_bytes if header.opcode == OPCODE_CONTINUATION else 0
            self._message_bytes = so_far + header.payload_length
            self._in_fragmented_message = not header.fin
        self.ws.ws.receive_data(frame)
        try:
            self.ws.connected = self.ws._handle_events()  # may answer: a pong, the close echo
        except OSError as error:
            self.ws.connected = False
            raise ConnectionClosed(1006, str(error)) from None

    def ping(self) -> None:
        """Send a Ping; :meth:`receive` notes the Pong."""
        with contextlib.suppress(ConnectionClosed, OSError), self._lock:
            self.ws.sock.send(self.ws.ws.send(Ping()))

    def close(self, code: int, reason: str) -> None:
        """Send a Close frame and wake the handler blocked in ``receive``
        (it stops reading: a peer that never echoes the close cannot hold it)."""
        self.send_close(code, reason)
        self.stop_reading()

    def send_close(self, code: int, reason: str) -> None:
        """Send a Close frame; the handler reads on until the peer's own Close (or :meth:`stop_reading`)."""
        with contextlib.suppress(ConnectionClosed, OSError), self._lock:
            self.ws.close(code, reason)

    def stop_reading(self) -> None:
        """Wake the handler blocked in ``receive``: it gets ConnectionClosed."""
        with contextlib.suppress(OSError):
            self.ws.sock.shutdown(socket.SHUT_RD)

    def hang_up(self) -> None:
        """End the TCP connection now that the close handshake is over (or the peer is gone),
        so that the peer does not wait for the handler's cleanup; never while a linger is due."""
        if not self._linger:
            with contextlib.suppress(OSError):
                self.ws.sock.shutdown(socket.SHUT_RDWR)

    def close_for_cause(self, code: int, reason: str) -> NoReturn:
        """Close for what the client sent, from the reading greenlet: send the Close frame
        and end the session, leaving the socket readable for :meth:`linger`."""
        with contextlib.suppress(ConnectionClosed, OSError), self._lock:
            self.ws.close(code, reason)
        self._linger = True
        raise ConnectionClosed(code, reason)

    def linger(self) -> None:
        """After a :meth:`close_for_cause`, once the session is cleaned up: read and drop
        what the client still sends (app.edge.linger) so that the socket closes without a reset."""
        if self._linger:
            self._linger = False
            linger(self.ws.sock, self._unread)
            self._unread.clear()

    def _send(self, opcode: int, payload: bytes, prefix: bytes = b"") -> None:
        if not self.ws.connected:
            raise ConnectionClosed(self.ws.close_reason, self.ws.close_message)
        metrics.MESSAGES_OUT.add()
        try:
            if self._compression:
                self._send_via_wsproto(opcode, prefix + payload)
            else:
                header = frame_header(opcode, len(prefix) + len(payload))
                if len(payload) < GATHER_FROM:
                    self.ws.sock.send(b"".join((header, prefix, payload)))
                else:
                    self.ws.sock.send_parts(header + prefix, payload)
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
