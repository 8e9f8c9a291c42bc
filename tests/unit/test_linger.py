"""The lingering close's frame walk (app/edge/linger.py), on hand-made client frames."""

from __future__ import annotations

import struct
import time

import gevent
import pytest

from app.edge.frames import OPCODE_BINARY, OPCODE_CLOSE, OPCODE_TEXT
from app.edge.linger import CloseScanner, linger


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame (the mask is zero: the payload is as given)."""
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return head + b"\0\0\0\0" + payload


CLOSE = client_frame(OPCODE_CLOSE, struct.pack("!H", 1000) + b"bye")


def test_the_rest_of_a_huge_message_is_skipped_then_the_close_is_seen() -> None:
    huge = client_frame(OPCODE_BINARY, b"x" * 300_000)
    scanner = CloseScanner()
    assert not scanner.feed(huge[:10])  # the header, as the server saw it when it refused
    for start in range(10, len(huge), 65536):
        assert not scanner.feed(huge[start : start + 65536])
    assert not scanner.feed(client_frame(OPCODE_TEXT, b'{"method":"ping"}'))
    assert scanner.feed(CLOSE)


@pytest.mark.parametrize("cut", range(1, len(CLOSE)))
def test_a_close_frame_split_anywhere_counts_only_once_whole(cut: int) -> None:
    scanner = CloseScanner()
    assert not scanner.feed(CLOSE[:cut])
    assert scanner.feed(CLOSE[cut:])


def test_a_payload_that_looks_like_a_close_is_not_one() -> None:
    assert not CloseScanner().feed(client_frame(OPCODE_BINARY, CLOSE * 3))


class Peer:
    """A socket's receiving side: what the client sends, in reads; ``b""`` is its end of stream."""

    def __init__(self, *reads: bytes) -> None:
        self.reads = list(reads)

    def recv(self, size: int) -> bytes:
        return self.reads.pop(0) if self.reads else b""


def test_linger_stops_reading_at_the_close() -> None:
    peer = Peer(client_frame(OPCODE_TEXT, b"more"), CLOSE, b"never read")
    linger(peer, b"")
    assert peer.reads == [b"never read"]


def test_linger_stops_at_the_end_of_stream_and_at_the_deadline() -> None:
    peer = Peer(b"partial", b"")
    linger(peer, b"")
    assert peer.reads == []

    class Silent:
        def recv(self, size: int) -> bytes:
            gevent.sleep(60)
            return b""

    began = time.monotonic()
    linger(Silent(), b"", seconds=0.2)
    assert time.monotonic() - began < 30  # bounded by its deadline, not by a peer that never speaks
