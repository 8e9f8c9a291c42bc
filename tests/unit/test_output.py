"""app.protocol.output: raw stream bytes to ``output`` notification params, with no I/O."""

from __future__ import annotations

import base64
import itertools
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.edge.subscriber import Subscriber
from app.processes.options import Options
from app.protocol import jsonrpc as protocol
from app.protocol.output import OutputEncoder, incomplete_tail_length

EURO = "€".encode()  # 3 bytes: e2 82 ac
GRIN = "😀".encode()  # 4 bytes: f0 9f 98 80
E_ACUTE = "é".encode()  # 2 bytes: c3 a9


def raw_of(params: dict[str, Any]) -> bytes:
    """The bytes a client gets back from one ``output`` params object."""
    if params.get("encoding") == "base64":
        return base64.b64decode(params["data"], validate=True)
    assert "encoding" not in params
    return params["data"].encode("utf-8")


def run(encoder: OutputEncoder, chunks: list[bytes]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    for chunk in chunks:
        sent.extend(encoder.feed(chunk))
    sent.extend(encoder.finish())
    return sent


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(cut, 0), len(data)) for cut in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# -- incomplete_tail_length -------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 0),
        (b"abc", 0),
        (E_ACUTE, 0),
        (EURO, 0),
        (GRIN, 0),
        (b"a" + E_ACUTE[:1], 1),
        (b"a" + EURO[:1], 1),
        (b"a" + EURO[:2], 2),
        (b"a" + GRIN[:1], 1),
        (b"a" + GRIN[:2], 2),
        (b"a" + GRIN[:3], 3),
        (GRIN[:3], 3),
        (EURO + GRIN[:2], 2),
        (b"\x80", 0),  # a stray continuation byte is not a character start
        (b"\x80\x80\x80\x80", 0),
        (b"a\xff", 0),  # never a lead byte
        (b"a\xf8", 0),
        (b"\xe2\x82\xac\x82", 0),  # one continuation byte too many: invalid, nothing to wait for
        (b"\xc3\xa9\xa9", 0),
    ],
)
def test_incomplete_tail_length(data: bytes, expected: int) -> None:
    assert incomplete_tail_length(data) == expected


# -- text mode --------------------------------------------------------------------


def test_ascii_is_sent_as_text_with_offsets() -> None:
    encoder = OutputEncoder(3, "stdout", "text")
    assert encoder.feed(b"hello\n") == [{"proc": 3, "stream": "stdout", "offset": 0, "data": "hello\n"}]
    assert encoder.feed(b"world\n") == [{"proc": 3, "stream": "stdout", "offset": 6, "data": "world\n"}]
    assert encoder.finish() == []
    assert encoder.offset == 12


def test_empty_feed_sends_nothing_and_keeps_the_offset() -> None:
    encoder = OutputEncoder(1, "stderr", "text")
    assert encoder.feed(b"") == []
    assert encoder.offset == 0
    assert encoder.feed(b"x") == [{"proc": 1, "stream": "stderr", "offset": 0, "data": "x"}]


def test_split_three_byte_character_is_held_until_complete() -> None:
    encoder = OutputEncoder(1, "stdout", "text")
    assert encoder.feed(b"cost: " + EURO[:1]) == [{"proc": 1, "stream": "stdout", "offset": 0, "data": "cost: "}]
    assert encoder.feed(EURO[1:2]) == []
    assert encoder.feed(EURO[2:] + b"5") == [{"proc": 1, "stream": "stdout", "offset": 6, "data": "€5"}]
    assert encoder.finish() == []
    assert encoder.offset == 10


def test_four_byte_character_fed_one_byte_at_a_time() -> None:
    encoder = OutputEncoder(2, "stdout", "text")
    sent = [params for byte in GRIN for params in encoder.feed(bytes([byte]))]
    assert sent == [{"proc": 2, "stream": "stdout", "offset": 0, "data": "😀"}]


def test_incomplete_character_at_end_of_stream_is_flushed_as_base64() -> None:
    encoder = OutputEncoder(1, "stdout", "text")
    assert encoder.feed(b"ok" + GRIN[:3]) == [{"proc": 1, "stream": "stdout", "offset": 0, "data": "ok"}]
    assert encoder.finish() == [
        {"proc": 1, "stream": "stdout", "offset": 2, "data": base64.b64encode(GRIN[:3]).decode(), "encoding": "base64"}
    ]
    assert encoder.finish() == []  # nothing held any more
    assert encoder.offset == 5


def test_invalid_utf8_chunk_is_sent_as_base64() -> None:
    encoder = OutputEncoder(4, "stderr", "text")
    assert encoder.feed(b"ab\xffcd") == [
        {
            "proc": 4,
            "stream": "stderr",
            "offset": 0,
            "data": base64.b64encode(b"ab\xffcd").decode(),
            "encoding": "base64",
        }
    ]
    assert encoder.feed(b"ok") == [{"proc": 4, "stream": "stderr", "offset": 5, "data": "ok"}]


def test_surrogate_encoding_is_not_text() -> None:
    # CESU-style surrogates are not UTF-8 (and could not be carried by JSON).
    encoder = OutputEncoder(1, "stdout", "text")
    sent = run(encoder, [b"\xed\xa0\x80"])
    assert sent == [{"proc": 1, "stream": "stdout", "offset": 0, "data": "7aCA", "encoding": "base64"}]


def test_overlong_encoding_is_not_text() -> None:
    encoder = OutputEncoder(1, "stdout", "text")
    sent = run(encoder, [b"\xc0", b"\xaf"])
    assert [raw_of(params) for params in sent] == [b"\xc0\xaf"]
    assert sent[0]["encoding"] == "base64"


def test_held_lead_byte_followed_by_ascii_goes_out_whole() -> None:
    encoder = OutputEncoder(1, "stdout", "text")
    assert encoder.feed(b"x\xe2") == [{"proc": 1, "stream": "stdout", "offset": 0, "data": "x"}]
    assert encoder.feed(b"yz") == [
        {"proc": 1, "stream": "stdout", "offset": 1, "data": base64.b64encode(b"\xe2yz").decode(), "encoding": "base64"}
    ]


def test_nul_and_control_bytes_are_text() -> None:
    encoder = OutputEncoder(1, "stdout", "text")
    assert encoder.feed(b"\x00\x1b[31m\r\n") == [
        {"proc": 1, "stream": "stdout", "offset": 0, "data": "\x00\x1b[31m\r\n"}
    ]


def test_streams_are_independent() -> None:
    out = OutputEncoder(1, "stdout", "text")
    err = OutputEncoder(1, "stderr", "text")
    assert out.feed(b"aaa") == [{"proc": 1, "stream": "stdout", "offset": 0, "data": "aaa"}]
    assert err.feed(b"b") == [{"proc": 1, "stream": "stderr", "offset": 0, "data": "b"}]
    assert out.feed(b"c") == [{"proc": 1, "stream": "stdout", "offset": 3, "data": "c"}]


# -- base64 mode ------------------------------------------------------------------


def test_base64_mode_sends_every_chunk_base64_at_once() -> None:
    encoder = OutputEncoder(5, "stdout", "base64")
    assert encoder.feed(b"hi") == [{"proc": 5, "stream": "stdout", "offset": 0, "data": "aGk=", "encoding": "base64"}]
    # a partial character is not held back in base64 mode
    assert encoder.feed(EURO[:1]) == [
        {"proc": 5, "stream": "stdout", "offset": 2, "data": "4g==", "encoding": "base64"}
    ]
    assert encoder.feed(b"") == []
    assert encoder.finish() == []
    assert encoder.offset == 3


def test_notification_with_params_encodes_to_json() -> None:
    encoder = OutputEncoder(1, "stdout", "text")
    (params,) = encoder.feed("ünï \x00 😀\n".encode())
    frame = protocol.encode(protocol.notification("output", params))
    assert orjson.loads(frame)["params"]["data"] == "ünï \x00 😀\n"


# -- properties -------------------------------------------------------------------

CHUNKED_BYTES = st.binary(max_size=300).flatmap(
    lambda data: st.tuples(st.just(data), st.lists(st.integers(0, len(data)), max_size=12))
)
# Text rich in multi-byte characters, so cuts often land inside one.
RICH_TEXT = st.text(
    alphabet=st.sampled_from("aZ\n\x00é߿ࠀ€ｱ\uffff😀\U0010ffff\U00010000") | st.characters(codec="utf-8"),
    max_size=120,
)
# Bytes that are mostly UTF-8 with some damage.
DAMAGED = st.lists(
    st.sampled_from([b"a", E_ACUTE, EURO, GRIN, b"\xff", b"\x80", GRIN[:2], EURO[:1], b"\xc0", b"\xed\xa0\x80"]),
    max_size=40,
).map(b"".join)


def check_stream(data: bytes, chunks: list[bytes], encoding: str) -> list[dict[str, Any]]:
    encoder = OutputEncoder(7, "stdout", encoding)  # type: ignore[arg-type]
    sent = run(encoder, chunks)
    # every byte exactly once, in order
    assert b"".join(raw_of(params) for params in sent) == data
    # offsets count raw bytes and are contiguous
    position = 0
    for params in sent:
        assert params["offset"] == position
        assert params["proc"] == 7 and params["stream"] == "stdout"
        raw = raw_of(params)
        assert raw  # no empty messages
        position += len(raw)
    assert encoder.offset == len(data)
    # each message survives JSON encoding exactly
    for params in sent:
        assert orjson.loads(protocol.encode(params)) == params
    return sent


@given(CHUNKED_BYTES)
def test_text_mode_loses_and_changes_nothing(case: tuple[bytes, list[int]]) -> None:
    data, cuts = case
    sent = check_stream(data, split(data, cuts), "text")
    for params in sent:
        raw = raw_of(params)
        if "encoding" in params:
            assert params["encoding"] == "base64"
            assert not is_utf8(raw)  # base64 only when it could not be text
        else:
            assert incomplete_tail_length(raw) == 0  # no message ends inside a character


@given(DAMAGED, st.lists(st.integers(0, 200), max_size=12))
def test_text_mode_with_damaged_utf8(data: bytes, cuts: list[int]) -> None:
    sent = check_stream(data, split(data, cuts), "text")
    for params in sent:
        if "encoding" in params:
            assert not is_utf8(raw_of(params))


@given(CHUNKED_BYTES)
def test_base64_mode_loses_and_changes_nothing(case: tuple[bytes, list[int]]) -> None:
    data, cuts = case
    chunks = split(data, cuts)
    sent = check_stream(data, chunks, "base64")
    assert all(params["encoding"] == "base64" for params in sent)
    assert [raw_of(params) for params in sent] == [chunk for chunk in chunks if chunk]


@given(RICH_TEXT, st.lists(st.integers(0, 500), max_size=12))
def test_valid_utf8_split_anywhere_is_always_text(text: str, cuts: list[int]) -> None:
    data = text.encode("utf-8")
    sent = check_stream(data, split(data, cuts), "text")
    assert all("encoding" not in params for params in sent)
    assert "".join(params["data"] for params in sent) == text


@given(RICH_TEXT)
def test_valid_utf8_byte_by_byte_is_sent_character_by_character(text: str) -> None:
    data = text.encode("utf-8")
    encoder = OutputEncoder(1, "stdout", "text")
    sent = []
    for fed, byte in enumerate(data, 1):
        out = encoder.feed(bytes([byte]))
        assert len(out) <= 1
        sent.extend(out)
        # a character goes out as soon as its last byte arrives: only a partial one is held
        assert incomplete_tail_length(data[: encoder.offset]) == 0
        assert fed - encoder.offset == incomplete_tail_length(data[:fed])
    assert encoder.finish() == []
    assert [params["data"] for params in sent] == list(text)


@given(st.binary(max_size=100), st.lists(st.integers(0, 100), max_size=8))
def test_at_most_three_bytes_are_ever_held(data: bytes, cuts: list[int]) -> None:
    encoder = OutputEncoder(1, "stdout", "text")
    fed = 0
    for chunk in split(data, cuts):
        out = encoder.feed(chunk)
        fed += len(chunk)
        assert len(out) <= 1
        assert 0 <= fed - encoder.offset <= 3
    encoder.finish()
    assert encoder.offset == fed


def test_next_offset_counts_the_bytes_held_back() -> None:
    encoder = OutputEncoder(1, "stdout", "text", offset=10)
    encoder.feed(b"ab" + EURO[:1])  # the euro sign's first byte waits for the rest
    assert encoder.offset == 12
    assert encoder.next_offset == 13


def test_a_subscriber_that_meets_a_gap_keeps_every_offset_true() -> None:
    """A remote reader behind its history gets a chunk further on: the held
    byte before the gap goes out alone, and the next chunk carries its own offset."""
    sent: list[dict[str, Any]] = []
    subscriber = Subscriber(lambda method, params: sent.append(params), lambda header, payload: None)
    process = SimpleNamespace(id=7, options=Options(), streams=["stdout"], offsets={"stdout": 0}, status=None)
    subscriber.output(process, "stdout", b"one" + EURO[:1], 0)
    subscriber.output(process, "stdout", b"later", 100)
    assert [(params["offset"], raw_of(params)) for params in sent] == [(0, b"one"), (3, EURO[:1]), (100, b"later")]
