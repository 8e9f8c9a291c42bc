"""The one WebSocket client of the suite, used alike against both servers.

It is ``websocket-client`` with UTF-8 validation off and no locking; a
connection's frames are read whole, pings are answered as they come.  On top
of it, :class:`ProcwireClient` speaks procwire's JSON-RPC and decodes output
whichever way the server sends it: ``output`` notifications (text or base64)
or binary frames (byte 0 the stream, bytes 1-4 the proc as a big-endian u32,
then the payload) for a process started with ``"binary": true``.
"""

from __future__ import annotations

import binascii
import itertools
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
import websocket
from websocket import ABNF

OPCODE_TEXT = ABNF.OPCODE_TEXT
OPCODE_BINARY = ABNF.OPCODE_BINARY
OPCODE_CLOSE = ABNF.OPCODE_CLOSE
STDIN, STDOUT, STDERR = 0, 1, 2
INVALID_PARAMS = -32602


class Closed(Exception):
    """The peer closed the connection (with a Close frame or without)."""


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")


class Conn:
    """One client connection."""

    def __init__(self, url: str, headers: list[str], timeout: float) -> None:
        self.closed = False  # set by whoever saw the peer close it
        self.ws = websocket.create_connection(
            url, header=headers, timeout=timeout, skip_utf8_validation=True, enable_multithread=False
        )

    def fileno(self) -> int:
        return self.ws.sock.fileno()

    def send_text(self, payload: bytes | str) -> None:
        self.ws.send(payload, OPCODE_TEXT)

    def send_binary(self, payload: bytes) -> None:
        self.ws.send(payload, OPCODE_BINARY)

    def recv(self) -> tuple[int, bytes]:
        """The next text or binary message; raises :class:`Closed` at the end."""
        try:
            opcode, data = self.ws.recv_data()
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            raise Closed from None
        if opcode == OPCODE_CLOSE:
            raise Closed
        return opcode, data

    def service(self) -> bool:
        """Read one frame of any kind (answering a ping); False once the peer closed."""
        try:
            opcode, _ = self.ws.recv_data(control_frame=True)
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return False
        return opcode != OPCODE_CLOSE

    def settimeout(self, timeout: float | None) -> None:
        self.ws.settimeout(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """The closing handshake: send Close, wait for the peer's, close the socket."""
        self.ws.close(timeout=timeout)

    def drop(self) -> None:
        """Close the socket without a handshake."""
        self.ws.shutdown()


@dataclass(frozen=True)
class OutputMode:
    """How a process's output is asked for in ``start``."""

    name: str
    start_params: dict[str, Any]


TEXT = OutputMode("text", {})
BASE64 = OutputMode("base64", {"encoding": "base64"})
BINARY = OutputMode("binary", {"binary": True})
OUTPUT_MODES = {mode.name: mode for mode in (TEXT, BASE64, BINARY)}


@dataclass(frozen=True)
class Output:
    proc: int
    stream: int
    data: bytes | memoryview


def decode(opcode: int, data: bytes) -> tuple[str, Any]:
    """One server message as ``(kind, value)``: output, exit, response, or the method name."""
    if opcode == OPCODE_BINARY:
        return "output", Output(int.from_bytes(data[1:5], "big"), data[0], memoryview(data)[5:])
    message = orjson.loads(data)
    method = message.get("method")
    if method == "output":
        params = message["params"]
        text = params["data"]
        payload = binascii.a2b_base64(text) if params.get("encoding") == "base64" else text.encode()
        return "output", Output(params["proc"], STDOUT if params["stream"] == "stdout" else STDERR, payload)
    if method is None:
        return "response", message
    return method, message.get("params")


class ProcwireClient:
    """JSON-RPC over one :class:`Conn`; events read while waiting for an answer are kept in order."""

    def __init__(self, url: str, headers: list[str], timeout: float) -> None:
        self.conn = Conn(url, headers, timeout)
        self._ids = itertools.count(1)
        self.pending: deque[tuple[str, Any]] = deque()

    def request(self, method: str, params: dict[str, Any]) -> int:
        request_id = next(self._ids)
        self.conn.send_text(orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
        return request_id

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self.conn.send_text(orjson.dumps({"jsonrpc": "2.0", "method": method, "params": params}))

    def next(self) -> tuple[str, Any]:
        if self.pending:
            return self.pending.popleft()
        return decode(*self.conn.recv())

    def answer(self, request_id: int) -> Any:
        kept: list[tuple[str, Any]] = []
        try:
            while True:
                kind, value = self.next()
                if kind == "response" and value.get("id") == request_id:
                    if "error" in value:
                        raise RpcError(value["error"])
                    return value["result"]
                kept.append((kind, value))
        finally:
            self.pending.extendleft(reversed(kept))

    def hello(self) -> dict[str, Any]:
        """The params of the ``hello`` notification, the first message of a connection."""
        kept: list[tuple[str, Any]] = []
        try:
            while True:
                kind, value = self.next()
                if kind == "hello":
                    return value
                kept.append((kind, value))
        finally:
            self.pending.extendleft(reversed(kept))

    def call(self, method: str, params: dict[str, Any]) -> Any:
        return self.answer(self.request(method, params))

    def start(self, argv: list[str], mode: OutputMode = TEXT, **params: Any) -> int:
        return self.call("start", dict(argv=argv, **mode.start_params, **params))["proc"]

    def write(self, proc: int, data: bytes, binary_frame: bool = False) -> None:
        """stdin as a ``write`` notification (text), or as a binary frame with stream byte 0."""
        if binary_frame:
            self.conn.send_binary(bytes([STDIN]) + proc.to_bytes(4, "big") + data)
        else:
            self.notify("write", {"proc": proc, "data": data.decode()})

    def echo(self, proc: int, line: bytes) -> None:
        """One round trip through a ``cat``: write ``line``, read its output back."""
        self.write(proc, line)
        got = 0
        while got < len(line):
            kind, value = self.next()
            if kind == "output" and value.proc == proc:
                got += len(value.data)

    def wait_exit(self, proc: int) -> dict[str, Any]:
        """Read (and drop) everything until ``proc``'s exit."""
        return self.wait_exits([proc])[0]

    def wait_exits(self, procs: list[int]) -> list[dict[str, Any]]:
        """Read (and drop) everything until each of ``procs`` has exited; their exits in that order."""
        exits: dict[int, dict[str, Any]] = {}
        while len(exits) < len(procs):
            kind, value = self.next()
            if kind == "exit" and value["proc"] in procs:
                exits[value["proc"]] = value
        return [exits[proc] for proc in procs]

    def close(self) -> None:
        self.conn.close()


def supports_binary(url: str, headers: list[str], timeout: float) -> bool:
    """Does this server accept ``"binary": true`` in ``start``?"""
    client = ProcwireClient(url, headers, timeout)
    try:
        try:
            proc = client.start(["/bin/true"], BINARY)
        except RpcError as error:
            if error.code == INVALID_PARAMS:
                return False
            raise
        client.wait_exit(proc)
        return True
    finally:
        client.close()


def binary_output_works(url: str, headers: list[str], timeout: float) -> bool:
    """Does a process started with ``"binary": true`` get its output to the client?
    (With ``REDIS_URL`` set, proc ids can outgrow the frame header's 32 bits.)"""
    client = ProcwireClient(url, headers, timeout)
    try:
        proc = client.start(["echo", "binary"], BINARY)
        while True:
            kind, value = client.next()
            if kind == "output" and value.proc == proc:
                return True
            if kind == "exit" and value["proc"] == proc:
                return False
    except (RpcError, OverflowError):
        return False
    finally:
        client.close()
