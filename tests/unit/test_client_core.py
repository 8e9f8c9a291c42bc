"""The sans-I/O core (procwire_client.core) alone: frames in, events out, no socket."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from procwire_client.core import BINARY_HEADER, Answered, Exited, Failed, Hello, Output, Protocol, Screen, StrayError
from procwire_client.core.protocol import ProtocolError
from procwire_client.errors import ERRORS_BY_CODE, ProcwireConnectionError

HELLO = json.dumps({"jsonrpc": "2.0", "method": "hello", "params": {"server": "procwire", "limits": {}}})
STREAM_BYTES = {"stdout": 1, "stderr": 2}


def connected() -> Protocol:
    protocol = Protocol()
    assert protocol.receive_text(HELLO) == [Hello({"server": "procwire", "limits": {}})]
    return protocol


def output_json(proc: int, stream: str, offset: int, data: bytes) -> str:
    try:
        params: dict[str, Any] = {"data": data.decode("utf-8")}
    except UnicodeDecodeError:
        params = {"data": base64.b64encode(data).decode(), "encoding": "base64"}
    params.update(proc=proc, stream=stream, offset=offset)
    return json.dumps({"jsonrpc": "2.0", "method": "output", "params": params})


def binary_frame(proc: int, stream: str, data: bytes) -> bytes:
    return BINARY_HEADER.pack(STREAM_BYTES[stream], proc) + data


def answer(request_id: int, result: Any) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result})


def feed(protocol: Protocol, frame: str | bytes) -> list[Any]:
    return protocol.receive_binary(frame) if isinstance(frame, bytes) else protocol.receive_text(frame)


def streams_of(events: list[Any]) -> dict[tuple[int, str], bytes]:
    joined: dict[tuple[int, str], bytes] = {}
    for event in events:
        if isinstance(event, Output):
            key = (event.proc, event.stream)
            assert event.offset == len(joined.get(key, b"")), "each stream's events are contiguous"
            joined[key] = joined.get(key, b"") + event.data
    return joined


# A process's output: chunks per stream, each non-empty.
chunks = st.lists(st.binary(min_size=1, max_size=40), max_size=6)
processes = st.dictionaries(
    st.integers(1, 5), st.fixed_dictionaries({"stdout": chunks, "stderr": chunks}), min_size=1, max_size=3
)


def frames_of(outputs: dict[int, dict[str, list[bytes]]], binary: set[int]) -> dict[tuple[int, str], list[Any]]:
    """Per (proc, stream), its frames in order: binary frames for procs in ``binary``, JSON for the others."""
    frames: dict[tuple[int, str], list[Any]] = {}
    for proc, streams in outputs.items():
        for stream, pieces in streams.items():
            offset, items = 0, []
            for piece in pieces:
                items.append(
                    binary_frame(proc, stream, piece) if proc in binary else output_json(proc, stream, offset, piece)
                )
                offset += len(piece)
            frames[(proc, stream)] = items
    return frames


@st.composite
def interleaved(draw: st.DrawFn) -> tuple[dict[int, dict[str, list[bytes]]], set[int], list[Any], int]:
    """Output of several processes in binary or JSON, interleaved at random with answers,
    order kept within each stream (as the server keeps it)."""
    outputs = draw(processes)
    binary = draw(st.sets(st.sampled_from(sorted(outputs))))
    queues = [list(items) for items in frames_of(outputs, binary).values()]
    answers = draw(st.integers(0, 4))
    queues.append([answer(request_id, {"n": request_id}) for request_id in range(1, answers + 1)])
    order: list[Any] = []
    while any(queues):
        queue = draw(st.sampled_from([q for q in queues if q]))
        order.append(queue.pop(0))
    return outputs, binary, order, answers


def expected_streams(outputs: dict[int, dict[str, list[bytes]]]) -> dict[tuple[int, str], bytes]:
    return {
        (proc, stream): b"".join(pieces)
        for proc, streams in outputs.items()
        for stream, pieces in streams.items()
        if pieces
    }


@given(interleaved())
def test_any_interleaving_gives_the_same_byte_streams_and_answers(case: Any) -> None:
    outputs, _, order, answers = case
    protocol = connected()
    ids = [protocol.request("ping")[0] for _ in range(answers)]
    events = [event for frame in order for event in feed(protocol, frame)]
    assert streams_of(events) == expected_streams(outputs)
    assert sorted(event.id for event in events if isinstance(event, Answered)) == ids
    assert all(event.result == {"n": event.id} for event in events if isinstance(event, Answered))
    assert protocol.pending == {}


@given(processes)
def test_binary_and_json_output_give_the_same_events(outputs: dict[int, dict[str, list[bytes]]]) -> None:
    as_json, as_binary = connected(), connected()
    json_events = [e for items in frames_of(outputs, set()).values() for f in items for e in feed(as_json, f)]
    binary_events = [
        e for items in frames_of(outputs, set(outputs)).values() for f in items for e in feed(as_binary, f)
    ]
    assert json_events == binary_events
    assert as_json.offsets == as_binary.offsets


@given(processes, st.data())
def test_batches_give_the_same_events_as_single_messages(outputs: Any, data: st.DataObject) -> None:
    messages = [json.loads(f) for items in frames_of(outputs, set()).values() for f in items]
    cut = data.draw(st.lists(st.integers(0, len(messages)), max_size=4))
    bounds = sorted({0, len(messages), *cut})
    batches = [json.dumps(messages[a:b]) for a, b in itertools.pairwise(bounds) if b > a]
    one, many = connected(), connected()
    assert [e for m in messages for e in one.receive_text(json.dumps(m))] == [
        e for b in batches for e in many.receive_text(b)
    ]


@given(st.binary(min_size=1, max_size=200), st.data())
def test_an_overlapping_replay_repeats_no_byte(stream: bytes, data: st.DataObject) -> None:
    """Chunks that overlap what already arrived (a replay from an earlier offset) are cut."""
    protocol = connected()
    received = b""
    for _ in range(data.draw(st.integers(1, 12))):
        start = data.draw(st.integers(0, len(received)))
        end = data.draw(st.integers(start, len(stream)))
        for event in protocol.receive_text(output_json(1, "stdout", start, stream[start:end])):
            assert event.offset == len(received)
            received += event.data
        assert received == stream[: len(received)]
    assert protocol.offsets[1]["stdout"] == len(received)


def test_request_ids_count_up_and_answers_find_their_request() -> None:
    protocol = connected()
    first, frame = protocol.request("start", {"argv": ["cat"]})
    second, _ = protocol.request("ping")
    assert (first, second) == (1, 2)
    assert json.loads(frame) == {"jsonrpc": "2.0", "id": 1, "method": "start", "params": {"argv": ["cat"]}}
    assert protocol.receive_text(answer(2, {"time": 1.0})) == [Answered(2, "ping", {}, {"time": 1.0})]
    assert protocol.receive_text(answer(2, {"time": 1.0})) == []  # answered already: ignored
    assert protocol.receive_text(answer(1, {"proc": 7, "pid": 9})) == [
        Answered(1, "start", {"argv": ["cat"]}, {"proc": 7, "pid": 9})
    ]
    assert protocol.offsets[7] == {"stdout": 0, "stderr": 0}


@pytest.mark.parametrize("code", sorted(ERRORS_BY_CODE))
def test_error_answers_become_their_exception_class(code: int) -> None:
    protocol = connected()
    request_id, _ = protocol.request("wait", {"proc": 3})
    message = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": "no", "data": {"x": 1}}}
    [event] = protocol.receive_text(json.dumps(message))
    assert isinstance(event, Failed) and type(event.error) is ERRORS_BY_CODE[code]
    assert (event.error.code, event.error.data, event.method) == (code, {"x": 1}, "wait")


def test_attach_answer_sets_the_offsets_to_replay_from() -> None:
    protocol = connected()
    request_id, _ = protocol.request("attach", {"proc": 4, "offset": 2})
    protocol.receive_text(answer(request_id, {"proc": 4, "replay_from": {"stdout": 6, "stderr": 0}, "truncated": True}))
    assert protocol.offsets[4] == {"stdout": 6, "stderr": 0}
    [event] = protocol.receive_binary(binary_frame(4, "stdout", b"6789"))
    assert event == Output(4, "stdout", b"6789", 6)


def test_screen_exit_and_detach() -> None:
    protocol = connected()
    screen = {"proc": 2, "data": "\x1b[H", "offset": 500, "rows": 24, "cols": 80}
    assert protocol.receive_text(json.dumps({"jsonrpc": "2.0", "method": "screen", "params": screen})) == [
        Screen(2, b"\x1b[H", 500, 24, 80)
    ]
    assert protocol.receive_text(output_json(2, "stdout", 500, b"x")) == [Output(2, "stdout", b"x", 500)]
    [exited] = protocol.receive_text(json.dumps({"jsonrpc": "2.0", "method": "exit", "params": {"proc": 2, "code": 3}}))
    assert isinstance(exited, Exited) and exited.status.code == 3
    request_id, _ = protocol.request("detach", {"proc": 2})
    protocol.receive_text(answer(request_id, {}))
    assert 2 not in protocol.offsets


def test_stray_errors_name_their_process_or_the_last_writer() -> None:
    protocol = connected()
    protocol.stdin_frame(5, b"x")
    refused = {"jsonrpc": "2.0", "id": None, "error": {"code": -32005, "message": "stdin closed"}}
    [event] = protocol.receive_text(json.dumps(refused))
    assert isinstance(event, StrayError) and event.proc == 5
    protocol.notification("write", {"proc": 6, "data": "x"})
    refused["error"] = {"code": -32002, "message": "no such process: 9"}
    assert protocol.receive_text(json.dumps(refused))[0].proc == 9


def test_connection_lost_fails_every_pending_request() -> None:
    protocol = connected()
    protocol.request("wait", {"proc": 1})
    protocol.request("ping")
    events = protocol.connection_lost(ProcwireConnectionError("gone", close_code=4000))
    assert [(e.id, e.method, type(e.error), e.error.close_code) for e in events] == [
        (1, "wait", ProcwireConnectionError, 4000),
        (2, "ping", ProcwireConnectionError, 4000),
    ]
    assert events[0].error is not events[1].error
    assert protocol.pending == {}


def test_no_hello_first_is_not_procwire() -> None:
    with pytest.raises(ProtocolError):
        Protocol().receive_text('{"jsonrpc":"2.0","id":1,"result":{}}')
    with pytest.raises(ProtocolError):
        Protocol().receive_text("<html>")


@given(st.binary(max_size=8))
def test_short_or_unknown_binary_frames_are_ignored(frame: bytes) -> None:
    protocol = connected()
    if len(frame) < BINARY_HEADER.size or frame[0] not in (1, 2):
        assert protocol.receive_binary(frame) == []
