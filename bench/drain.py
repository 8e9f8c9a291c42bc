"""The fan-out workload's load client, run as one or more processes of its own.

Each process opens its share of the stream connections when told ``go``
and reads them all in one selector loop over the raw sockets: a ``recv``
of up to a mebibyte at a time, and nothing decoded but frame headers, so
that a process keeps up with far more than one server worker can send.
Binary frames (and the continuations of websocketd's fragmented ones) are
counted by their length; the few text frames (procwire's
answers and notifications, its output in JSON modes) are parsed whole.
A stream is over at procwire's ``exit`` notification or at websocketd's
Close frame.  At the end it prints one JSON line: the bytes received, the
streams finished, and the CPU time the process used, which shows whether
the client or the server was the limit.

    python -m bench.drain --kind procwire --url ws://127.0.0.1:PORT/ws --header "Authorization: Bearer T" \\
        --connections 150 --params '{"argv": ["head", "-c", "8000000", "/dev/zero"], "binary": true}'
"""

from __future__ import annotations

import argparse
import binascii
import json
import resource
import selectors
import socket
import sys
import time
from dataclasses import dataclass, field

import orjson

from bench.client import Conn

RECV_SIZE = 1 << 20
FIN = 0x80
BINARY_OUTPUT_HEADER = 5  # stream byte and a big-endian u32 proc
OPCODE_CONTINUATION, OPCODE_TEXT, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING = 0x0, 0x1, 0x2, 0x8, 0x9


@dataclass
class Stream:
    """One connection's frames, read incrementally: a header, then its payload."""

    sock: socket.socket
    procwire: bool
    received: int = 0  # the stream's output bytes
    ended: bool = False
    _buffer: bytearray = field(default_factory=bytearray)
    _skip: int = 0  # bytes of a binary payload still to come: counted, never kept
    _in_binary_message: bool = False  # a fragmented binary message (websocketd's) goes on

    def feed(self, data: bytes) -> None:
        """Take what ``recv`` returned; set ``ended`` once the stream is over."""
        if self._skip:
            taken = min(self._skip, len(data))
            self._skip -= taken
            data = data[taken:]
        self._buffer += data
        while not self.ended and not self._skip and self._take_frame():
            pass

    def _take_frame(self) -> bool:
        header = _header(self._buffer)
        if header is None:
            return False
        opcode, start, length = header
        if opcode == OPCODE_BINARY or (opcode == OPCODE_CONTINUATION and self._in_binary_message):
            self._in_binary_message = not self._buffer[0] & FIN
            self.received += length - (BINARY_OUTPUT_HEADER if self.procwire and opcode == OPCODE_BINARY else 0)
            have = len(self._buffer) - start
            self._skip = max(length - have, 0)
            del self._buffer[: start + min(length, have)]
            return True
        if len(self._buffer) < start + length:
            return False
        payload = bytes(self._buffer[start : start + length])
        del self._buffer[: start + length]
        self._control_or_text(opcode, payload)
        return True

    def _control_or_text(self, opcode: int, payload: bytes) -> None:
        if opcode == OPCODE_CLOSE:
            self.ended = True
        elif opcode == OPCODE_PING:
            _send_pong(self.sock, payload)
        elif opcode == OPCODE_TEXT and self.procwire:
            self._procwire_message(orjson.loads(payload))

    def _procwire_message(self, message: dict) -> None:
        method = message.get("method")
        if method == "exit":
            self.ended = True
        elif method == "output":
            params = message["params"]
            data = params["data"]
            self.received += len(binascii.a2b_base64(data) if params.get("encoding") == "base64" else data.encode())
        elif "error" in message:
            raise RuntimeError(f"procwire refused the stream: {message['error']}")


def _header(buffer: bytearray) -> tuple[int, int, int] | None:
    """``(opcode, payload start, payload length)`` of the unmasked frame at the start, or None."""
    if len(buffer) < 2:
        return None
    length, start = buffer[1] & 0x7F, 2
    if length >= 126:
        width = 2 if length == 126 else 8
        if len(buffer) < 2 + width:
            return None
        length = int.from_bytes(buffer[2 : 2 + width], "big")
        start += width
    return buffer[0] & 0x0F, start, length


def _send_pong(sock: socket.socket, payload: bytes) -> None:
    """A masked Pong with an all-zero key (the payload goes as it is)."""
    sock.setblocking(True)
    sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
    sock.setblocking(False)


def open_stream(kind: str, url: str, headers: list[str], params: dict, timeout: float) -> Stream:
    conn = Conn(url, headers, timeout)
    if kind == "procwire":
        conn.send_text(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "start", "params": params}))
    sock = conn.ws.sock
    assert sock is not None
    sock.setblocking(False)
    return Stream(sock, procwire=kind == "procwire")


def drain(streams: list[Stream], deadline: float) -> None:
    """Read every stream until it ends (or the deadline passes)."""
    selector = selectors.DefaultSelector()
    for stream in streams:
        selector.register(stream.sock, selectors.EVENT_READ, stream)
    running = len(streams)
    while running and time.monotonic() < deadline:
        for key, _ in selector.select(1.0):
            stream = key.data
            try:
                data = stream.sock.recv(RECV_SIZE)
            except BlockingIOError:
                continue
            stream.feed(data)
            if stream.ended or not data:
                stream.ended = True
                selector.unregister(stream.sock)
                running -= 1
    selector.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drain")
    parser.add_argument("--kind", choices=["procwire", "websocketd"], required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--params", default="{}", help="procwire: the start request's params, as JSON")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    params = json.loads(args.params)

    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    deadline = time.monotonic() + args.max_seconds
    streams = [open_stream(args.kind, args.url, args.header, params, args.timeout) for _ in range(args.connections)]
    drain(streams, deadline)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "received": sum(stream.received for stream in streams),
        "ended": sum(stream.ended for stream in streams),
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }
    for stream in streams:
        stream.sock.close()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
