"""A small synchronous JSON-RPC client over a real WebSocket, for tests.

Every receive is bounded by ``timeout``; notifications that arrive while
waiting for an answer are kept in order for later inspection.
"""

from __future__ import annotations

import base64
import itertools
import json
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import websocket

BINARY_HEADER = struct.Struct("!BI")
BINARY_STREAMS = {1: "stdout", 2: "stderr"}


class RpcFailure(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error['code']}: {error['message']}")
        self.code = error["code"]
        self.message = error["message"]
        self.data = error.get("data")


@dataclass
class Collected:
    """Everything one process sent: its output per stream, and its exit."""

    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    binary_frames: int = 0
    exit: dict[str, Any] | None = None


def read_close(ws: websocket.WebSocket, timeout: float = 10.0) -> tuple[int, str]:
    """Read frames until the server's Close frame; its code and reason."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = ws.recv_frame()
        if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
            data = bytes(frame.data)
            assert len(data) >= 2, data
            return struct.unpack("!H", data[:2])[0], data[2:].decode("utf-8", "replace")
    raise AssertionError("no Close frame in time")


def chunk_bytes(params: dict[str, Any]) -> bytes:
    if params.get("encoding") == "base64":
        return base64.b64decode(params["data"])
    return params["data"].encode("utf-8")


class RpcClient:
    def __init__(self, url: str, token: str | None, *, timeout: float = 15.0, header: list[str] | None = None) -> None:
        target = f"{url}?token={token}" if token is not None else url
        self.ws = websocket.create_connection(target, timeout=timeout, header=header or [], skip_utf8_validation=True)
        self.timeout = timeout
        self._ids = itertools.count(1)
        self.pending: deque[dict[str, Any]] = deque()
        self.hello = self.next_message()
        assert self.hello["method"] == "hello"

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw frames -----------------------------------------------------------

    def send_json(self, message: Any) -> None:
        self.ws.send(json.dumps(message))

    def send_text(self, text: str) -> None:
        self.ws.send(text)

    def next_message(self) -> Any:
        """The next message from the server, queued or fresh; binary frames as bytes."""
        if self.pending:
            return self.pending.popleft()
        frame = self.ws.recv()
        return frame if isinstance(frame, bytes) else json.loads(frame)

    def send_binary(self, frame: bytes) -> None:
        self.ws.send_binary(frame)

    # -- requests ---------------------------------------------------------------

    def request(self, method: str, params: dict[str, Any] | None = None) -> int:
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send_json(message)
        return request_id

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self.send_json({"jsonrpc": "2.0", "method": method, "params": params})

    def response(self, request_id: Any) -> dict[str, Any]:
        """Wait for the answer to ``request_id``, keeping notifications aside."""
        kept: list[Any] = []
        try:
            while True:
                message = self.next_message()
                if isinstance(message, dict) and "id" in message and message["id"] == request_id:
                    return message
                kept.append(message)
        finally:
            self.pending.extendleft(reversed(kept))

    def call(self, method: str, **params: Any) -> Any:
        answer = self.response(self.request(method, params))
        if "error" in answer:
            raise RpcFailure(answer["error"])
        return answer["result"]

    def error_of(self, method: str, **params: Any) -> RpcFailure:
        """Call, expecting an error; return it."""
        try:
            result = self.call(method, **params)
        except RpcFailure as failure:
            return failure
        raise AssertionError(f"{method} succeeded unexpectedly: {result}")

    # -- notifications ----------------------------------------------------------

    def collect(self, proc: int) -> Collected:
        """Read until ``proc``'s exit; other messages stay queued."""
        collected = Collected()
        kept: list[Any] = []
        try:
            while collected.exit is None:
                message = self.next_message()
                if isinstance(message, bytes):
                    stream, sender = BINARY_HEADER.unpack_from(message)
                    if sender == proc:
                        getattr(collected, BINARY_STREAMS[stream]).extend(message[BINARY_HEADER.size :])
                        collected.binary_frames += 1
                    else:
                        kept.append(message)
                    continue
                params = message.get("params", {})
                if message.get("method") == "output" and params.get("proc") == proc:
                    collected.outputs.append(params)
                    getattr(collected, params["stream"]).extend(chunk_bytes(params))
                elif message.get("method") == "exit" and params.get("proc") == proc:
                    collected.exit = params
                else:
                    kept.append(message)
        finally:
            self.pending.extendleft(reversed(kept))
        return collected

    def run_to_exit(self, argv: list[str], **params: Any) -> Collected:
        started = self.call("start", argv=argv, **params)
        return self.collect(started["proc"])


def start_bursts(connections: list[RpcClient], params: dict[str, Any], per_connection: int = 5) -> list[dict[str, Any]]:
    """Every connection sends a batch of ``per_connection`` starts, all at the same moment
    (a barrier); the answers of all of them, in no particular order."""
    barrier = threading.Barrier(len(connections))
    answers: list[dict[str, Any]] = []
    lock = threading.Lock()

    def burst(client: RpcClient) -> None:
        batch = [
            {"jsonrpc": "2.0", "id": index, "method": "start", "params": params} for index in range(per_connection)
        ]
        barrier.wait(timeout=10)
        client.send_json(batch)
        reply = client.next_message()
        with lock:
            answers.extend(reply)

    threads = [threading.Thread(target=burst, args=(client,)) for client in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers
