"""JSON-RPC 2.0 framing for procwire, with no I/O.

``parse`` turns one text frame into the calls it holds (or the error that
answers it); ``success``, ``failure`` and ``notification`` build the objects
that go back; ``encode`` serialises them.  The endpoint does the socket work.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.errors import ErrorCode, RpcError

JSONRPC = "2.0"
MAX_EXACT_ID = 2**53  # larger numbers lose digits when parsed; 64-bit ints stay ints
NO_ID: Any = object()  # marks a notification: the request had no "id" member


@dataclass(frozen=True)
class Call:
    """One decoded request, or the error that must answer it instead."""

    id: Any = NO_ID
    method: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    error: RpcError | None = None

    @property
    def is_notification(self) -> bool:
        return self.id is NO_ID


@dataclass(frozen=True)
class Message:
    """A frame's calls; ``batch`` says whether the answer must be an array."""

    calls: list[Call]
    batch: bool = False


def parse(frame: str | bytes) -> Message:
    """Decode a text frame into calls; never raises."""
    try:
        document = orjson.loads(frame)
    except orjson.JSONDecodeError as error:
        return Message([_invalid(None, ErrorCode.PARSE_ERROR, f"Parse error: {error}")])
    if isinstance(document, list):
        if not document:
            return Message([_invalid(None, ErrorCode.INVALID_REQUEST, "Invalid Request: empty batch")])
        return Message([_call(item) for item in document], batch=True)
    return Message([_call(document)])


def _call(item: Any) -> Call:
    if not isinstance(item, dict):
        return _invalid(None, ErrorCode.INVALID_REQUEST, "Invalid Request: expected an object")
    request_id = item.get("id", NO_ID)
    if (
        request_id is not NO_ID
        and request_id is not None
        and (isinstance(request_id, bool) or not isinstance(request_id, str | int | float))
    ):
        return _invalid(None, ErrorCode.INVALID_REQUEST, "Invalid Request: id must be a string, a number or null")
    if isinstance(request_id, float) and abs(request_id) >= MAX_EXACT_ID:
        return _invalid(None, ErrorCode.INVALID_REQUEST, "Invalid Request: id is too large to echo exactly")
    answer_id = None if request_id is NO_ID else request_id
    if item.get("jsonrpc") != JSONRPC:
        return _invalid(answer_id, ErrorCode.INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"')
    method = item.get("method")
    if not isinstance(method, str):
        return _invalid(answer_id, ErrorCode.INVALID_REQUEST, 'Invalid Request: "method" must be a string')
    unknown = set(item) - {"jsonrpc", "id", "method", "params"}
    if unknown:
        return _invalid(answer_id, ErrorCode.INVALID_REQUEST, f"Invalid Request: unknown member {sorted(unknown)[0]!r}")
    params = item.get("params", {})
    if not isinstance(params, dict):
        # A well-formed notification is never answered, even when its params are bad.
        return _invalid(request_id, ErrorCode.INVALID_PARAMS, "Invalid params: params must be an object")
    return Call(id=request_id, method=method, params=params)


def _invalid(request_id: Any, code: ErrorCode, message: str) -> Call:
    """A call answered by ``message``; ``request_id`` NO_ID keeps it silent."""
    return Call(id=request_id, error=RpcError(code, message))


STREAM_CODES = {"stdin": 0, "stdout": 1, "stderr": 2}
BINARY_HEADER = struct.Struct("!BI")


def binary_output_header(stream: str, proc: int) -> bytes:
    """Byte 0 the stream (1 stdout, 2 stderr), bytes 1-4 ``proc`` big-endian."""
    return BINARY_HEADER.pack(STREAM_CODES[stream], proc)


def parse_binary_stdin(frame: bytes) -> tuple[int, bytes]:
    """``(proc, payload)`` of a client's binary frame, which may only carry stdin."""
    if len(frame) < BINARY_HEADER.size:
        raise RpcError(ErrorCode.INVALID_REQUEST, "Invalid Request: a binary frame needs a 5-byte header")
    stream, proc = BINARY_HEADER.unpack_from(frame)
    if stream != STREAM_CODES["stdin"]:
        raise RpcError(
            ErrorCode.INVALID_REQUEST, f"Invalid Request: binary frames carry stdin (stream 0), not stream {stream}"
        )
    return proc, frame[BINARY_HEADER.size :]


def success(request_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC, "id": request_id, "result": result}


def failure(request_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC, "id": request_id, "error": error.to_json()}


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC, "method": method, "params": params}


def encode(message: Any) -> bytes:
    """Serialise an answer or notification to UTF-8 JSON."""
    return orjson.dumps(message)
