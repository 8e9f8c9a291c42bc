"""The client's frames as bytes: headers parsed, payloads unmasked, server headers built.

Pure functions of RFC 6455 section 5.2, no I/O; :mod:`app.edge.wire` and
:mod:`app.edge.linger` read the socket.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

OPCODE_CONTINUATION = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
FIN = 0x80
OPCODE_CLOSE = 0x8


@dataclass(frozen=True)
class FrameHeader:
    """The parsed header of one frame from the client (RFC 6455 section 5.2)."""

    fin: bool
    rsv: int
    opcode: int
    mask: bytes | None
    payload_start: int
    payload_length: int

    @property
    def size(self) -> int:
        return self.payload_start + self.payload_length

    @property
    def whole_data_message(self) -> bool:
        """Unfragmented, uncompressed, masked text or binary: decodable here."""
        return self.fin and not self.rsv and self.mask is not None and self.opcode in (OPCODE_TEXT, OPCODE_BINARY)


def parse_frame_header(buffer: bytes | bytearray) -> FrameHeader | None:
    """The header at the start of ``buffer``, or None while it is incomplete."""
    if len(buffer) < 2:
        return None
    first, second = buffer[0], buffer[1]
    length, position = second & 0x7F, 2
    if length >= 126:
        width = 2 if length == 126 else 8
        if len(buffer) < position + width:
            return None
        length = int.from_bytes(buffer[position : position + width], "big")
        position += width
    mask = None
    if second & 0x80:
        if len(buffer) < position + 4:
            return None
        mask = bytes(buffer[position : position + 4])
        position += 4
    return FrameHeader(bool(first & FIN), first & 0x70, first & 0x0F, mask, position, length)


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR the payload with the 4-byte key, as one big-integer operation."""
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


def frame_header(opcode: int, length: int) -> bytes:
    """The header of a final, unmasked server frame (RFC 6455 section 5.2)."""
    if length < 126:
        return struct.pack("!BB", FIN | opcode, length)
    if length < 1 << 16:
        return struct.pack("!BBH", FIN | opcode, 126, length)
    return struct.pack("!BBQ", FIN | opcode, 127, length)
