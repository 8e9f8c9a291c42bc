"""The procwire protocol as a state machine, with no socket and no thread.

:class:`Protocol` turns calls into frames (request ids, pending calls, binary
stdin headers) and received frames into :mod:`~procwire_client.core.events`
(answers, errors as exception classes, output with its offset per process and
stream, screens, exits).  The sync and asyncio clients only move bytes between
their socket and this object, as the ``h11`` and ``websockets`` libraries do:
the protocol is written (and tested) once.
"""

from __future__ import annotations

import itertools
import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from procwire_client.core.events import Answered, Event, Exited, Failed, Hello, Output, Screen, StrayError
from procwire_client.errors import ProcwireConnectionError, ProcwireError, error_from_json
from procwire_client.results import ExitStatus, decode_data

BINARY_HEADER = struct.Struct("!BI")
BINARY_STREAMS = {1: "stdout", 2: "stderr"}
STREAMS = ("stdout", "stderr")
# Unanswered stdin bytes per process when the server does not report its
# STDIN_BUFFER_BYTES (4 MiB by default): beyond that it refuses writes.
DEFAULT_WRITE_WINDOW = 1 << 20
DEFAULT_MAX_MESSAGE = 1 << 20
DEFAULT_MAX_CHUNK = 512 * 1024
JSON_SLACK = 4096  # room for the JSON around a write's data
_NAMED_PROCESS = re.compile(r"process:? (\d+)")


@dataclass(frozen=True)
class Limits:
    """How large the frames this client sends may be (from the server's hello)."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE
    write_chunk: int = DEFAULT_MAX_CHUNK
    write_window: int = DEFAULT_WRITE_WINDOW

    @classmethod
    def from_hello(cls, hello: Mapping[str, Any]) -> Limits:
        limits = hello.get("limits") or {}
        max_message = int(limits.get("max_message_bytes") or DEFAULT_MAX_MESSAGE)
        max_chunk = int(limits.get("max_stdin_chunk") or DEFAULT_MAX_CHUNK)
        # A base64 chunk must fit in one message with its JSON around it.
        chunk = max(1, min(max_chunk, (max_message - JSON_SLACK) // 4 * 3))
        return cls(max_message, chunk, int(limits.get("stdin_buffer_bytes") or DEFAULT_WRITE_WINDOW))


class ProtocolError(ProcwireConnectionError):
    """The peer is not a procwire server (no ``hello`` first)."""


def encode_json(message: Any) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


class Protocol:
    """One connection's protocol state: pending requests and per-process stream offsets.

    ``offsets[proc][stream]`` is the end of what arrived of that stream: it
    starts at 0 when a ``start`` is answered, at ``replay_from`` when an
    ``attach`` is, and moves with every output.  It is what a client resumes
    from after a dropped connection.
    """

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.pending: dict[int, tuple[str, dict[str, Any]]] = {}
        self.offsets: dict[int, dict[str, int]] = {}
        self.hello: dict[str, Any] | None = None
        self.limits = Limits()
        self._last_writer: int | None = None

    # -- outgoing -----------------------------------------------------------------

    def request(self, method: str, params: Mapping[str, Any] | None = None) -> tuple[int, str]:
        """A new request: its id (now pending) and its text frame."""
        request_id = next(self._ids)
        sent = dict(params or {})
        self.pending[request_id] = (method, sent)
        self._note_writer(method, sent)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if sent:
            message["params"] = sent
        return request_id, encode_json(message)

    def cancel(self, request_id: int) -> None:
        """Forget a request whose frame could not be sent."""
        self.pending.pop(request_id, None)

    def notification(self, method: str, params: Mapping[str, Any] | None = None) -> str:
        """A notification's text frame (never answered, except a refused ``write``)."""
        sent = dict(params or {})
        self._note_writer(method, sent)
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if sent:
            message["params"] = sent
        return encode_json(message)

    def stdin_frame(self, proc: int, data: bytes) -> bytes:
        """A binary stdin frame (never answered; a refusal comes as a :class:`StrayError`)."""
        self._last_writer = proc
        return BINARY_HEADER.pack(0, proc) + data

    def _note_writer(self, method: str, params: Mapping[str, Any]) -> None:
        if method == "write" and isinstance(params.get("proc"), int):
            self._last_writer = params["proc"]

    # -- incoming -----------------------------------------------------------------

    def receive_text(self, data: str | bytes) -> list[Event]:
        """The events of one text frame (a message or a batch); junk is ignored."""
        try:
            message = json.loads(data)
        except ValueError:
            if self.hello is None:
                raise ProtocolError("the server is not a procwire server (no hello)") from None
            return []
        if self.hello is None:
            return [self._receive_hello(message)]
        events: list[Event] = []
        for item in message if isinstance(message, list) else [message]:
            if isinstance(item, dict):
                events += self._receive_message(item)
        return events

    def _receive_hello(self, message: Any) -> Hello:
        if not isinstance(message, dict) or message.get("method") != "hello":
            raise ProtocolError("the server is not a procwire server (no hello)")
        params = message.get("params")
        self.hello = dict(params) if isinstance(params, dict) else {}
        self.limits = Limits.from_hello(self.hello)
        return Hello(self.hello)

    def receive_binary(self, frame: bytes) -> list[Event]:
        """The output event of one binary frame, its offset counted from the stream's end."""
        if len(frame) < BINARY_HEADER.size:
            return []
        stream, proc = BINARY_HEADER.unpack_from(frame)
        if stream not in BINARY_STREAMS:
            return []
        name = BINARY_STREAMS[stream]
        return self._output(proc, name, bytes(frame[BINARY_HEADER.size :]), self._end(proc, name))

    def _receive_message(self, message: dict[str, Any]) -> list[Event]:
        if "id" not in message:
            params = message.get("params")
            return self._notification(message.get("method"), params) if isinstance(params, dict) else []
        request_id = message["id"]
        if request_id is None:
            error = message.get("error")
            return [self._stray(error_from_json(error))] if isinstance(error, dict) else []
        if not isinstance(request_id, int) or request_id not in self.pending:
            return []
        method, params = self.pending.pop(request_id)
        if "error" in message:
            return [Failed(request_id, method, params, error_from_json(message["error"]))]
        result = message.get("result")
        self._answered(method, params, result)
        return [Answered(request_id, method, params, result)]

    def _notification(self, method: Any, params: dict[str, Any]) -> list[Event]:
        proc = params.get("proc")
        if not isinstance(proc, int):
            return []
        if method == "output":
            stream = params.get("stream", "stdout")
            data = decode_data(params.get("data") or "", params.get("encoding"))
            offset = params.get("offset")
            return self._output(proc, stream, data, offset if isinstance(offset, int) else self._end(proc, stream))
        if method == "exit":
            return [Exited(proc, ExitStatus.from_json(params))]
        if method == "screen" and isinstance(params.get("data"), str) and isinstance(params.get("offset"), int):
            self.offsets.setdefault(proc, dict.fromkeys(STREAMS, 0))["stdout"] = params["offset"]
            return [
                Screen(proc, params["data"].encode("utf-8"), params["offset"], params.get("rows"), params.get("cols"))
            ]
        return []

    def _end(self, proc: int, stream: str) -> int:
        return self.offsets.get(proc, {}).get(stream, 0)

    def _output(self, proc: int, stream: str, data: bytes, offset: int) -> list[Event]:
        """Cut what was already received (an overlapping replay), move the stream's end."""
        ends = self.offsets.setdefault(proc, dict.fromkeys(STREAMS, 0))
        end = ends.get(stream, 0)
        if offset < end:
            data = data[end - offset :]
            offset = end
        if not data:
            return []
        ends[stream] = offset + len(data)
        return [Output(proc, stream, data, offset)]

    def _answered(self, method: str, params: dict[str, Any], result: Any) -> None:
        """Follow the offsets of what this connection now receives (or no longer does)."""
        if not isinstance(result, dict):
            return
        if method == "start" and isinstance(result.get("proc"), int):
            self.offsets[result["proc"]] = dict.fromkeys(STREAMS, 0)
        elif method == "attach" and isinstance(params.get("proc"), int):
            replay_from = result.get("replay_from")
            start = requested_offsets(params.get("offset"))
            if isinstance(replay_from, dict):
                start.update({key: value for key, value in replay_from.items() if isinstance(value, int)})
            self.offsets[params["proc"]] = start
        elif method == "detach" and isinstance(params.get("proc"), int):
            self.offsets.pop(params["proc"], None)

    def _stray(self, error: ProcwireError) -> StrayError:
        match = _NAMED_PROCESS.search(error.message)
        return StrayError(error, int(match.group(1)) if match else self._last_writer)

    # -- the end ------------------------------------------------------------------

    def connection_lost(self, error: ProcwireConnectionError) -> list[Event]:
        """Fail every pending request (each with its own copy of ``error``)."""
        failed: list[Event] = [
            Failed(request_id, method, params, copy_connection_error(error))
            for request_id, (method, params) in self.pending.items()
        ]
        self.pending.clear()
        return failed


def requested_offsets(offset: Any) -> dict[str, int]:
    """The per-stream offsets of an ``attach`` param (a number is stdout's)."""
    start = dict.fromkeys(STREAMS, 0)
    if isinstance(offset, int):
        start["stdout"] = offset
    elif isinstance(offset, Mapping):
        start.update({key: value for key, value in offset.items() if isinstance(value, int)})
    return start


def copy_connection_error(error: ProcwireConnectionError) -> ProcwireConnectionError:
    """A fresh exception like ``error``: each raise gets its own traceback."""
    return type(error)(error.message, status=error.status, close_code=error.close_code, close_reason=error.close_reason)
