"""app.protocol: frames in, calls out, answers encoded; no sockets involved."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import ErrorCode, RpcError
from app.protocol import jsonrpc as protocol
from app.protocol.jsonrpc import NO_ID, Call, Message, parse

JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
IDS = st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)
PARAMS = st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=5)


def request(**members: Any) -> str:
    return orjson.dumps({"jsonrpc": "2.0", **members}).decode()


def only_call(frame: str | bytes) -> Call:
    message = parse(frame)
    assert not message.batch
    assert len(message.calls) == 1
    return message.calls[0]


def error_of(frame: str | bytes) -> tuple[Any, int, str]:
    call = only_call(frame)
    assert call.error is not None, call
    return call.id, call.error.code, call.error.message


# -- error codes ------------------------------------------------------------------


def test_error_codes_match_the_spec() -> None:
    assert {code.name: int(code) for code in ErrorCode} == {
        "PARSE_ERROR": -32700,
        "INVALID_REQUEST": -32600,
        "METHOD_NOT_FOUND": -32601,
        "INVALID_PARAMS": -32602,
        "INTERNAL_ERROR": -32603,
        "NOT_FOUND": -32001,
        "NO_SUCH_PROCESS": -32002,
        "PERMISSION_DENIED": -32003,
        "LIMIT_EXCEEDED": -32004,
        "PROCESS_EXITED": -32005,
        "TIMEOUT": -32006,
        "SPAWN_FAILED": -32007,
        "PROCESS_RUNNING": -32008,
        "CLUSTER_UNAVAILABLE": -32009,
    }


def test_rpc_error_to_json_without_data() -> None:
    error = RpcError(ErrorCode.NOT_FOUND, "executable not found: nope")
    assert error.to_json() == {"code": -32001, "message": "executable not found: nope"}
    assert type(error.to_json()["code"]) is int
    assert str(error) == "executable not found: nope"


def test_rpc_error_to_json_with_data() -> None:
    error = RpcError(ErrorCode.PERMISSION_DENIED, "denied", {"errno": 13, "filename": "/x"})
    assert error.to_json() == {"code": -32003, "message": "denied", "data": {"errno": 13, "filename": "/x"}}


def test_rpc_error_refused_data_flag_is_not_sent() -> None:
    assert RpcError(ErrorCode.PROCESS_EXITED, "gone").refused_data is False
    error = RpcError(ErrorCode.LIMIT_EXCEEDED, "stdin buffer full", {"limit": 4}, refused_data=True)
    assert error.refused_data is True
    assert error.to_json() == {"code": -32004, "message": "stdin buffer full", "data": {"limit": 4}}


def test_rpc_error_with_empty_data_keeps_it() -> None:
    assert RpcError(ErrorCode.TIMEOUT, "t", {}).to_json() == {"code": -32006, "message": "t", "data": {}}


# -- well-formed requests ---------------------------------------------------------


@pytest.mark.parametrize("request_id", [1, 0, -5, 2**63 - 1, 1.5, "abc", "", None])
def test_request_keeps_its_id(request_id: Any) -> None:
    call = only_call(request(id=request_id, method="ping"))
    assert call.error is None
    assert call.id == request_id
    assert type(call.id) is type(request_id)
    assert call.method == "ping"
    assert call.params == {}
    assert call.is_notification is False


@pytest.mark.parametrize("text", ["18446744073709551615", "-9223372036854775808", "9007199254740993"])
def test_64_bit_integer_ids_are_echoed_exactly(text: str) -> None:
    call = only_call('{"jsonrpc": "2.0", "method": "ping", "id": ' + text + "}")
    assert call.error is None
    assert call.id == int(text)
    assert f'"id":{text}'.encode() in protocol.encode(protocol.success(call.id, {}))


@pytest.mark.parametrize(
    "text", ["18446744073709551616", "-18446744073709551617", "1e20", "9007199254740992.0", "-1e300"]
)
def test_ids_too_large_to_echo_exactly_are_invalid(text: str) -> None:
    request_id, code, message = error_of('{"jsonrpc": "2.0", "method": "ping", "id": ' + text + "}")
    assert request_id is None
    assert code == ErrorCode.INVALID_REQUEST
    assert message == "Invalid Request: id is too large to echo exactly"


def test_largest_exact_float_id_is_accepted() -> None:
    call = only_call('{"jsonrpc": "2.0", "method": "ping", "id": 9007199254740991.0}')
    assert call.error is None
    assert call.id == 2**53 - 1


def test_null_id_is_a_request_not_a_notification() -> None:
    call = only_call(request(id=None, method="ping"))
    assert call.id is None
    assert not call.is_notification


def test_notification_has_no_id() -> None:
    call = only_call(request(method="write", params={"proc": 1, "data": "x"}))
    assert call.error is None
    assert call.id is NO_ID
    assert call.is_notification
    assert call.params == {"proc": 1, "data": "x"}


def test_params_object_is_passed_through() -> None:
    params = {"argv": ["echo", "hi"], "env": {"A": None}, "timeout": 1.5}
    call = only_call(request(id=7, method="start", params=params))
    assert call.params == params
    assert call.method == "start"


def test_members_in_any_order_and_bytes_frame() -> None:
    frame = b'{"params": {"file": "sh"}, "method": "lookpath", "id": "q", "jsonrpc": "2.0"}'
    call = only_call(frame)
    assert (call.id, call.method, call.params, call.error) == ("q", "lookpath", {"file": "sh"}, None)


def test_non_ascii_method_and_params() -> None:
    call = only_call(request(id=1, method="ünï", params={"data": "héllo ✓ 😀"}))
    assert call.method == "ünï"
    assert call.params == {"data": "héllo ✓ 😀"}


def test_default_call_is_a_notification_without_error() -> None:
    call = Call()
    assert call.is_notification
    assert call.params == {}
    assert call.error is None


# -- parse errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "   ",
        "{",
        "{'jsonrpc': '2.0'}",
        '{"jsonrpc": "2.0", "method": "ping", "id": 1,}',
        '{"jsonrpc": "2.0", "method": "ping"} trailing',
        "NaN",
        "Infinity",
        "1e400",
        '"\\ud800"',  # a lone surrogate
        "[" * 5000,  # deeper than any parser should follow
        b"\xff\xfe",
        b'{"jsonrpc": "2.0", "method": "\xc3"}',
        "\ufeff{}",
    ],
)
def test_parse_error(frame: str | bytes) -> None:
    request_id, code, message = error_of(frame)
    assert request_id is None
    assert code == ErrorCode.PARSE_ERROR
    assert message.startswith("Parse error")


def test_parse_error_answer_has_null_id() -> None:
    call = only_call("not json")
    answer = protocol.failure(call.id, call.error)
    assert orjson.loads(protocol.encode(answer)) == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": call.error.message},
    }


# -- invalid requests -------------------------------------------------------------


@pytest.mark.parametrize("document", ["1", '"ping"', "null", "true", "1.5"])
def test_non_object_is_invalid_request(document: str) -> None:
    request_id, code, message = error_of(document)
    assert (request_id, code) == (None, ErrorCode.INVALID_REQUEST)
    assert message == "Invalid Request: expected an object"


@pytest.mark.parametrize(
    ("members", "fragment"),
    [
        ({"id": 3, "method": "ping"}, '"jsonrpc" must be "2.0"'),
        ({"jsonrpc": "1.0", "id": 3, "method": "ping"}, '"jsonrpc" must be "2.0"'),
        ({"jsonrpc": 2.0, "id": 3, "method": "ping"}, '"jsonrpc" must be "2.0"'),
        ({"jsonrpc": "2.0", "id": 3}, '"method" must be a string'),
        ({"jsonrpc": "2.0", "id": 3, "method": 5}, '"method" must be a string'),
        ({"jsonrpc": "2.0", "id": 3, "method": None}, '"method" must be a string'),
        ({"jsonrpc": "2.0", "id": 3, "method": ["ping"]}, '"method" must be a string'),
        ({"jsonrpc": "2.0", "id": 3, "method": "ping", "extra": 1}, "unknown member 'extra'"),
        ({"jsonrpc": "2.0", "id": 3, "method": "ping", "result": 1}, "unknown member 'result'"),
    ],
)
def test_invalid_request_keeps_a_valid_id(members: dict[str, Any], fragment: str) -> None:
    request_id, code, message = error_of(orjson.dumps(members))
    assert request_id == 3
    assert code == ErrorCode.INVALID_REQUEST
    assert message.startswith("Invalid Request: ")
    assert fragment in message


@pytest.mark.parametrize("bad_id", [True, False, [1], {"a": 1}])
def test_bad_id_type_is_invalid_request_with_null_id(bad_id: Any) -> None:
    request_id, code, message = error_of(request(id=bad_id, method="ping"))
    assert request_id is None
    assert code == ErrorCode.INVALID_REQUEST
    assert "id must be a string, a number or null" in message


def test_invalid_notification_is_still_answered_with_null_id() -> None:
    # JSON-RPC: an invalid Request object is answered, with id null when none can be read.
    call = only_call('{"jsonrpc": "1.0", "method": "ping"}')
    assert call.error is not None
    assert call.error.code == ErrorCode.INVALID_REQUEST
    assert call.id is None
    assert not call.is_notification


def test_unknown_members_are_named_first_in_sorted_order() -> None:
    _, _, message = error_of(request(id=1, method="ping", zeta=1, alpha=2))
    assert message == "Invalid Request: unknown member 'alpha'"


@pytest.mark.parametrize("params", [[1, 2], [], "x", 5, None, True])
def test_params_that_are_not_an_object_are_invalid_params(params: Any) -> None:
    request_id, code, message = error_of(request(id=9, method="ping", params=params))
    assert request_id == 9
    assert code == ErrorCode.INVALID_PARAMS
    assert message == "Invalid params: params must be an object"


def test_notification_with_array_params_stays_a_notification() -> None:
    call = only_call('{"jsonrpc": "2.0", "method": "write", "params": [1, "x"]}')
    assert call.error is not None
    assert call.error.code == ErrorCode.INVALID_PARAMS
    assert call.is_notification


# -- batches ----------------------------------------------------------------------


def test_empty_batch_is_a_single_invalid_request() -> None:
    message = parse("[]")
    assert message.batch is False  # JSON-RPC answers `[]` with one error object, not an array
    assert len(message.calls) == 1
    call = message.calls[0]
    assert call.id is None
    assert call.error is not None
    assert call.error.code == ErrorCode.INVALID_REQUEST
    assert call.error.message == "Invalid Request: empty batch"


def test_batch_keeps_order_and_mixes_calls_notifications_and_errors() -> None:
    frame = orjson.dumps(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "ping"},
            {"jsonrpc": "2.0", "method": "write", "params": {"proc": 1, "data": "x"}},
            1,
            {"jsonrpc": "2.0", "id": "b", "method": 3},
            {"jsonrpc": "2.0", "id": 2, "method": "list", "params": {}},
        ]
    )
    message = parse(frame)
    assert message.batch is True
    first, second, third, fourth, fifth = message.calls
    assert (first.id, first.method, first.error) == (1, "ping", None)
    assert second.is_notification and second.method == "write" and second.error is None
    assert third.id is None and third.error is not None and third.error.code == ErrorCode.INVALID_REQUEST
    assert fourth.id == "b" and fourth.error is not None and fourth.error.code == ErrorCode.INVALID_REQUEST
    assert (fifth.id, fifth.method, fifth.error) == (2, "list", None)


def test_batch_of_non_objects_gives_one_error_each() -> None:
    message = parse("[1, 2, 3]")
    assert message.batch is True
    assert len(message.calls) == 3
    assert all(call.error is not None and call.error.code == ErrorCode.INVALID_REQUEST for call in message.calls)
    assert all(call.id is None for call in message.calls)


def test_nested_batch_is_an_invalid_member() -> None:
    message = parse('[[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]]')
    assert message.batch is True
    assert len(message.calls) == 1
    assert message.calls[0].error is not None
    assert message.calls[0].error.code == ErrorCode.INVALID_REQUEST


def test_single_element_batch_is_still_a_batch() -> None:
    message = parse('[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]')
    assert message == Message([Call(id=1, method="ping", params={})], batch=True)


def test_batch_of_notifications_only() -> None:
    message = parse('[{"jsonrpc": "2.0", "method": "a"}, {"jsonrpc": "2.0", "method": "b"}]')
    assert message.batch is True
    assert [call.method for call in message.calls] == ["a", "b"]
    assert all(call.is_notification for call in message.calls)


# -- binary frames ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "proc", "header"),
    [
        ("stdout", 1, b"\x01\x00\x00\x00\x01"),
        ("stderr", 1, b"\x02\x00\x00\x00\x01"),
        ("stdout", 0x01020304, b"\x01\x01\x02\x03\x04"),
        ("stderr", 2**32 - 1, b"\x02\xff\xff\xff\xff"),
        ("stdin", 7, b"\x00\x00\x00\x00\x07"),
    ],
)
def test_binary_output_header(stream: str, proc: int, header: bytes) -> None:
    assert protocol.binary_output_header(stream, proc) == header


def test_parse_binary_stdin() -> None:
    assert protocol.parse_binary_stdin(b"\x00\x00\x00\x01\x00hello") == (256, b"hello")
    assert protocol.parse_binary_stdin(b"\x00\x00\x00\x00\x05") == (5, b"")
    assert protocol.parse_binary_stdin(b"\x00\xff\xff\xff\xff\x00\xff") == (2**32 - 1, b"\x00\xff")


@pytest.mark.parametrize("frame", [b"", b"\x00", b"\x00\x00\x00\x01"])
def test_binary_stdin_frame_too_short(frame: bytes) -> None:
    with pytest.raises(RpcError) as caught:
        protocol.parse_binary_stdin(frame)
    assert caught.value.code == ErrorCode.INVALID_REQUEST
    assert caught.value.message == "Invalid Request: a binary frame needs a 5-byte header"


@pytest.mark.parametrize("stream", [1, 2, 3, 255])
def test_binary_frame_for_another_stream_is_refused(stream: int) -> None:
    with pytest.raises(RpcError) as caught:
        protocol.parse_binary_stdin(bytes([stream]) + b"\x00\x00\x00\x01data")
    assert caught.value.code == ErrorCode.INVALID_REQUEST
    assert caught.value.message == f"Invalid Request: binary frames carry stdin (stream 0), not stream {stream}"


@given(st.integers(1, 2**32 - 1), st.binary(max_size=64))
def test_binary_stdin_round_trip(proc: int, payload: bytes) -> None:
    frame = protocol.binary_output_header("stdin", proc) + payload
    assert protocol.parse_binary_stdin(frame) == (proc, payload)


# -- building and encoding answers ----------------------------------------------


def test_success_shape() -> None:
    assert protocol.success(4, {"time": 1.0}) == {"jsonrpc": "2.0", "id": 4, "result": {"time": 1.0}}
    assert protocol.success(None, {}) == {"jsonrpc": "2.0", "id": None, "result": {}}


def test_failure_shape() -> None:
    error = RpcError(ErrorCode.NO_SUCH_PROCESS, "no such process: 5", {"proc": 5})
    assert protocol.failure("x", error) == {
        "jsonrpc": "2.0",
        "id": "x",
        "error": {"code": -32002, "message": "no such process: 5", "data": {"proc": 5}},
    }


def test_notification_shape_has_no_id() -> None:
    note = protocol.notification("output", {"proc": 1, "stream": "stdout", "data": "hi", "offset": 0})
    assert note == {
        "jsonrpc": "2.0",
        "method": "output",
        "params": {"proc": 1, "stream": "stdout", "data": "hi", "offset": 0},
    }
    assert "id" not in note


def test_encode_is_compact_utf8_json_bytes() -> None:
    encoded = protocol.encode(protocol.success(1, {"data": "é✓"}))
    assert isinstance(encoded, bytes)
    assert encoded == '{"jsonrpc":"2.0","id":1,"result":{"data":"é✓"}}'.encode()


def test_encode_error_code_is_a_json_number() -> None:
    encoded = protocol.encode(protocol.failure(1, RpcError(ErrorCode.METHOD_NOT_FOUND, "Method not found: 'x'")))
    assert orjson.loads(encoded)["error"]["code"] == -32601
    assert b'"code":-32601' in encoded


def test_encode_a_batch_answer() -> None:
    answers = [protocol.success(1, {}), protocol.failure(2, RpcError(ErrorCode.TIMEOUT, "timed out"))]
    assert orjson.loads(protocol.encode(answers)) == [
        {"jsonrpc": "2.0", "id": 1, "result": {}},
        {"jsonrpc": "2.0", "id": 2, "error": {"code": -32006, "message": "timed out"}},
    ]


# -- properties -------------------------------------------------------------------


@given(request_id=IDS, method=st.text(max_size=30), params=PARAMS)
def test_encoded_request_round_trips(request_id: Any, method: str, params: dict[str, Any]) -> None:
    call = only_call(protocol.encode({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
    assert call.error is None
    assert call == Call(id=request_id, method=method, params=params)


@given(method=st.text(max_size=30), params=PARAMS)
def test_encoded_notification_round_trips(method: str, params: dict[str, Any]) -> None:
    call = only_call(protocol.encode(protocol.notification(method, params)))
    assert call.error is None
    assert call.is_notification
    assert (call.method, call.params) == (method, params)


@given(st.lists(st.tuples(IDS, st.text(max_size=10)), min_size=1, max_size=8))
def test_batch_round_trips_in_order(items: list[tuple[Any, str]]) -> None:
    frame = protocol.encode([{"jsonrpc": "2.0", "id": i, "method": m} for i, m in items])
    message = parse(frame)
    assert message.batch is True
    assert [(call.id, call.method, call.error) for call in message.calls] == [(i, m, None) for i, m in items]


@given(st.text(max_size=200) | st.binary(max_size=200))
def test_parse_never_raises_on_arbitrary_frames(frame: str | bytes) -> None:
    message = parse(frame)
    assert message.calls
    for call in message.calls:
        if call.error is None:
            assert isinstance(call.method, str)
            assert isinstance(call.params, dict)
        else:
            assert call.error.code in {ErrorCode.PARSE_ERROR, ErrorCode.INVALID_REQUEST, ErrorCode.INVALID_PARAMS}
            assert call.method == ""


@given(JSON_VALUES)
def test_any_json_document_gives_calls_or_answerable_errors(document: Any) -> None:
    message = parse(orjson.dumps(document))
    assert message.batch == (isinstance(document, list) and len(document) > 0)
    expected = len(document) if message.batch else 1
    assert len(message.calls) == expected
    for call in message.calls:
        if call.error is None:
            assert isinstance(call.method, str)
            assert isinstance(call.params, dict)
        else:
            assert call.error.code in {ErrorCode.INVALID_REQUEST, ErrorCode.INVALID_PARAMS}
            assert call.method == ""
            # the id it is answered with is one JSON can carry
            assert call.id is None or isinstance(call.id, str | int | float)
            if isinstance(call.id, float):
                assert math.isfinite(call.id)
