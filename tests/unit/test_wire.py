"""app.wire.frame_header against wsproto's own encoding of server frames."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, TextMessage
from wsproto.frame_protocol import FrameProtocol, Opcode

from app.edge import wire
from app.edge.frames import FIN, OPCODE_BINARY, OPCODE_TEXT, frame_header

LENGTHS = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20]


def wsproto_frame(payload: bytes | str) -> bytes:
    """A final, unmasked server frame as wsproto builds it."""
    return bytes(FrameProtocol(client=False, extensions=[]).send_data(payload, fin=True))


def test_constants() -> None:
    assert (FIN, OPCODE_TEXT, OPCODE_BINARY) == (0x80, Opcode.TEXT, Opcode.BINARY)


@pytest.mark.parametrize("length", LENGTHS)
def test_binary_header_matches_wsproto(length: int) -> None:
    payload = bytes(length)
    frame = wsproto_frame(payload)
    header = frame_header(OPCODE_BINARY, length)
    assert frame == header + payload
    assert len(header) == len(frame) - length


@pytest.mark.parametrize("length", LENGTHS)
def test_text_header_matches_wsproto(length: int) -> None:
    text = "a" * length
    assert wsproto_frame(text) == frame_header(OPCODE_TEXT, length) + text.encode()


def test_multibyte_text_length_counts_bytes() -> None:
    text = "é😀" * 30  # 180 bytes, 60 characters: the 16-bit form
    payload = text.encode()
    assert wsproto_frame(text) == frame_header(OPCODE_TEXT, len(payload)) + payload


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
        (1 << 20, b"\x81\x7f\x00\x00\x00\x00\x00\x10\x00\x00"),
        (1 << 32, b"\x81\x7f\x00\x00\x00\x01\x00\x00\x00\x00"),
        ((1 << 63) - 1, b"\x81\x7f\x7f\xff\xff\xff\xff\xff\xff\xff"),
    ],
)
def test_header_bytes(length: int, header: bytes) -> None:
    assert frame_header(OPCODE_TEXT, length) == header


def test_header_sizes_by_form() -> None:
    assert [len(frame_header(OPCODE_BINARY, n)) for n in (0, 125, 126, 65535, 65536)] == [2, 2, 4, 4, 10]


def test_server_frames_are_unmasked_and_final() -> None:
    for length in LENGTHS:
        header = frame_header(OPCODE_BINARY, length)
        assert header[0] == 0x82  # FIN, no RSV bits, binary
        assert header[1] & 0x80 == 0  # no mask bit


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 70_000), st.sampled_from([OPCODE_TEXT, OPCODE_BINARY]))
def test_any_length_matches_wsproto(length: int, opcode: int) -> None:
    payload: bytes | str = "x" * length if opcode == OPCODE_TEXT else b"\x00" * length
    expected = wsproto_frame(payload)
    assert frame_header(opcode, length) == expected[: len(expected) - length]


@given(st.integers(0, (1 << 63) - 1))
def test_header_decodes_back_to_its_length(length: int) -> None:
    header = frame_header(OPCODE_BINARY, length)
    short = header[1] & 0x7F
    if short < 126:
        decoded = short
        assert len(header) == 2
    elif short == 126:
        (decoded,) = struct.unpack("!H", header[2:])
        assert decoded >= 126
    else:
        (decoded,) = struct.unpack("!Q", header[2:])
        assert decoded >= 1 << 16
    assert decoded == length  # and always in the shortest form (RFC 6455 5.2)


@pytest.mark.parametrize("length", [0, 125, 126, 65536])
def test_a_client_decodes_our_frame(length: int) -> None:
    payload = bytes(range(256)) * (length // 256) + bytes(length % 256)
    client = FrameProtocol(client=True, extensions=[])
    client.receive_bytes(frame_header(OPCODE_BINARY, length) + payload)
    frames = list(client.received_frames())
    assert len(frames) == 1
    assert frames[0].opcode == Opcode.BINARY
    assert frames[0].message_finished is True
    assert bytes(frames[0].payload) == payload


# -- client frames: parse_frame_header and unmask ---------------------------------


def client_frame(payload: bytes | str, fin: bool = True) -> bytes:
    """A masked frame as a real client library (wsproto, client side) writes it."""
    connection = Connection(ConnectionType.CLIENT)
    event = TextMessage(payload, message_finished=fin) if isinstance(payload, str) else BytesMessage(payload, fin)
    return connection.send(event)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 300_000])
def test_client_frames_decode_to_their_payload(size: int) -> None:
    payload = bytes(index % 251 for index in range(size))
    frame = client_frame(payload)
    header = wire.parse_frame_header(frame)
    assert header is not None
    assert header.size == len(frame)
    assert header.payload_length == size
    assert header.whole_data_message and header.opcode == wire.OPCODE_BINARY
    assert header.mask is not None
    assert wire.unmask(frame[header.payload_start :], header.mask) == payload


def test_text_frame_and_fragment_are_told_apart() -> None:
    whole = wire.parse_frame_header(client_frame("héllo"))
    assert whole is not None and whole.opcode == wire.OPCODE_TEXT and whole.whole_data_message
    fragment = wire.parse_frame_header(client_frame("hé", fin=False))
    assert fragment is not None and not fragment.fin and not fragment.whole_data_message


@pytest.mark.parametrize("cut", [0, 1, 3, 5])
def test_an_incomplete_header_is_none(cut: int) -> None:
    frame = client_frame(b"x" * 70_000)  # 2 + 8 + 4 header bytes
    assert wire.parse_frame_header(frame[:cut]) is None


@given(st.binary(max_size=2048), st.binary(min_size=4, max_size=4))
def test_unmask_is_its_own_inverse(payload: bytes, mask: bytes) -> None:
    assert wire.unmask(wire.unmask(payload, mask), mask) == payload
