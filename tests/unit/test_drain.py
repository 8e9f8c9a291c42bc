"""The fan-out load client counts output bytes from frame headers alone: check it on frames made by hand."""

from __future__ import annotations

import socket
import struct

import orjson

from bench.drain import Stream


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """An unmasked server frame (RFC 6455 section 5.2)."""
    first = (0x80 if fin else 0) | opcode
    if len(payload) < 126:
        return struct.pack("!BB", first, len(payload)) + payload
    if len(payload) < 1 << 16:
        return struct.pack("!BBH", first, 126, len(payload)) + payload
    return struct.pack("!BBQ", first, 127, len(payload)) + payload


def feed_in_pieces(stream: Stream, data: bytes, size: int) -> None:
    for start in range(0, len(data), size):
        stream.feed(data[start : start + size])


def a_stream(procwire: bool) -> Stream:
    left, right = socket.socketpair()
    right.close()
    return Stream(left, procwire=procwire)


def procwire_frames() -> tuple[bytes, int]:
    chunks = [b"x" * 10, b"y" * 300, b"z" * 70_000]
    frames = [frame(0x2, bytes([1, 0, 0, 0, 7]) + chunk) for chunk in chunks]
    answer = {"jsonrpc": "2.0", "id": 1, "result": {}}
    text = {"jsonrpc": "2.0", "method": "output", "params": {"proc": 7, "stream": "stderr", "data": "abc"}}
    exit_note = {"jsonrpc": "2.0", "method": "exit", "params": {"proc": 7, "code": 0}}
    notes = [frame(0x1, orjson.dumps(message)) for message in (answer, text, exit_note)]
    data = b"".join([notes[0], *frames, *notes[1:]])
    return data, sum(map(len, chunks)) + 3


def test_procwire_output_is_counted_in_any_slicing_of_the_bytes() -> None:
    data, expected = procwire_frames()
    for size in (1, 2, 7, 1000, len(data)):
        stream = a_stream(procwire=True)
        feed_in_pieces(stream, data, size)
        assert (stream.received, stream.ended) == (expected, True), size


def test_websocketd_fragmented_messages_are_counted_whole() -> None:
    parts = [b"a" * 4096, b"b" * 100_000, b"c" * 5]
    message = frame(0x2, parts[0], fin=False) + frame(0x0, parts[1], fin=False) + frame(0x0, parts[2])
    data = message + frame(0x2, b"d" * 200) + frame(0x8, struct.pack("!H", 1000))
    for size in (3, 4096, len(data)):
        stream = a_stream(procwire=False)
        feed_in_pieces(stream, data, size)
        assert (stream.received, stream.ended) == (sum(map(len, parts)) + 200, True), size
