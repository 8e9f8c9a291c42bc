"""Closing on the client's own misbehaviour without losing the Close frame.

When the server ends a connection for what the client sent (1009: a message
over the limit; 1008: too many messages), the client may still be sending:
the rest of a 40 MB message, more requests.  A socket closed with unread
bytes sends a TCP reset, and a reset can overtake or discard our Close frame,
so the client sees "connection reset" instead of the reason.  As web
servers do (nginx's lingering close), the server reads and drops what keeps
coming, until the client's own Close frame, its end of the stream, or
:data:`LINGER_SECONDS`; only then is the socket closed.

:class:`CloseScanner` is the sans-I/O part: it walks the client's frames,
skipping their payloads, and says when a Close frame has arrived whole.
"""

from __future__ import annotations

import time
from typing import Protocol

import gevent

from app.edge.frames import OPCODE_CLOSE, parse_frame_header

LINGER_SECONDS = 5.0  # as nginx's lingering_timeout
READ_BYTES = 256 * 1024


class Readable(Protocol):
    def recv(self, size: int) -> bytes: ...


class CloseScanner:
    """Frames from the client, payloads skipped, until a whole Close frame."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip = 0  # payload bytes of the current frame still to drop
        self.closed = False

    def feed(self, data: bytes | bytearray) -> bool:
        """Take more bytes; True once the client's Close frame is complete."""
        if self.closed:
            return True
        view = memoryview(data)
        dropped = min(self._skip, len(view))
        self._skip -= dropped
        self._buffer += view[dropped:]
        while not self._skip:
            header = parse_frame_header(self._buffer)
            if header is None:
                break
            if header.opcode == OPCODE_CLOSE and len(self._buffer) >= header.size:
                self.closed = True
                break
            if header.opcode == OPCODE_CLOSE:
                break  # its payload (code and reason) is still coming
            taken = min(header.size, len(self._buffer))
            del self._buffer[:taken]
            self._skip = header.size - taken
        return self.closed


def linger(sock: Readable, unread: bytes | bytearray, seconds: float = LINGER_SECONDS) -> None:
    """Read and drop the client's bytes until its Close frame, its end of stream, or ``seconds``."""
    scanner = CloseScanner()
    if scanner.feed(unread):
        return
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        data = b""
        with gevent.Timeout(remaining, False):
            try:
                data = sock.recv(READ_BYTES)
            except OSError:
                return
        if not data or scanner.feed(data):
            return
