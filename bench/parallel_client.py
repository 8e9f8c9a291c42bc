"""One process of the parallel workload's clients: several connections at once, one selector loop.

    python -m bench.parallel_client '<JSON config>'

The config names the server (``port``, ``path``, ``token`` or none), the
``mode`` and how many ``connections`` this process keeps busy:

- ``cycle``: procwire: connect, send ``start`` of /bin/true as soon as the
  101 is in, read until its ``exit``, do the closing handshake, connect
  again;
- ``websocketd``: connect, read until websocketd closes (its /bin/true
  ended), close, connect again;
- ``starts``: procwire, over connections opened beforehand: ``start``, read
  until the ``exit``, again.

Raw sockets and hand-made frames keep the client's own CPU small: the
machine has two cores, shared by the client, the server and the programs.
The process prints ``ready`` once set up (the ``starts`` connections open
and greeted), waits for a line on stdin, runs for ``seconds`` (operations
finished by then are counted; those in flight are completed, not counted),
and prints one JSON line: operations done, the node of each connection's
``hello``, its own CPU seconds, errors.  Every wait is bounded by
``timeout``.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import selectors
import socket
import sys
import time
from collections import Counter
from typing import Any

import orjson

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 1, 2, 8, 9, 10
MASK = os.urandom(4)


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (always masked), FIN set."""
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, 0x80 | length])
    elif length < 1 << 16:
        header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
    key = (MASK * (length // 4 + 1))[:length]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big") if length else b""
    return header + MASK + body


START = masked_frame(OP_TEXT, b'{"jsonrpc":"2.0","id":1,"method":"start","params":{"argv":["/bin/true"]}}')
CLOSE = masked_frame(OP_CLOSE, (1000).to_bytes(2, "big"))


class ClientError(Exception):
    pass


class Link:
    """One connection and where it is in its operation."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.sock = socket.create_connection(("127.0.0.1", client.port), timeout=client.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.sock.sendall(client.request)
        self.buffer = bytearray()
        self.state = "handshake"
        self.greeted = False
        self.since = time.monotonic()

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, data: bytes) -> None:
        # Small frames into an empty socket buffer: sent whole (a short send would be a bug here).
        if self.sock.send(data) != len(data):
            raise ClientError("short send")

    def readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except ConnectionError as error:
            data = b""
            if self.state not in ("closing", "until close"):
                raise ClientError(f"{type(error).__name__} in state {self.state}") from None
        self.since = time.monotonic()
        if not data:
            if self.state in ("closing", "until close"):
                self.client.finished(self)
                return
            raise ClientError(f"the server closed the connection in state {self.state}")
        self.buffer += data
        if self.state == "handshake":
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[: self.buffer.find(b"\r\n")])
            if b" 101 " not in status:
                raise ClientError(f"handshake answered {status!r}")
            del self.buffer[: end + 4]
            self.client.opened(self)
        self._frames()

    def _frames(self) -> None:
        while len(self.buffer) >= 2 and self.state not in ("done", "handshake"):
            opcode = self.buffer[0] & 0x0F
            length = self.buffer[1] & 0x7F
            offset = 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                length, offset = int.from_bytes(self.buffer[2:4], "big"), 4
            elif length == 127:
                if len(self.buffer) < 10:
                    return
                length, offset = int.from_bytes(self.buffer[2:10], "big"), 10
            if len(self.buffer) < offset + length:
                return
            payload = bytes(self.buffer[offset : offset + length])
            del self.buffer[: offset + length]
            self._frame(opcode, payload)

    def _frame(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self.send(masked_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            if self.state == "closing" or self.state == "until close":
                self.client.finished(self)
            else:
                raise ClientError(f"the server sent Close in state {self.state}: {payload[2:]!r}")
        elif opcode == OP_TEXT:
            message = orjson.loads(payload)
            method = message.get("method")
            if method == "hello":
                self.client.nodes[message["params"].get("node", "?")] += 1
                self.greeted = True
                if self.state == "greeting":
                    self.state = "idle"
            elif method == "exit" and self.state == "running":
                self.client.exited(self)
            elif "error" in message:
                raise ClientError(f"procwire answered an error: {message['error']}")

    def close(self) -> None:
        self.client.selector.unregister(self)
        self.sock.close()
        self.state = "done"


class Client:
    def __init__(self, config: dict[str, Any]) -> None:
        self.port = int(config["port"])
        self.mode = config["mode"]
        self.connections = int(config["connections"])
        self.seconds = float(config["seconds"])
        self.timeout = float(config["timeout"])
        key = base64.b64encode(os.urandom(16)).decode()
        headers = [
            f"GET {config['path']} HTTP/1.1",
            f"Host: 127.0.0.1:{self.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if config.get("token"):
            headers.append(f"Authorization: Bearer {config['token']}")
        self.request = ("\r\n".join(headers) + "\r\n\r\n").encode()
        self.selector = selectors.DefaultSelector()
        self.links: set[Link] = set()
        self.nodes: Counter[str] = Counter()
        self.done = 0
        self.running = False
        self.stop_at = 0.0

    # -- operations ------------------------------------------------------------------

    def open(self) -> Link:
        link = Link(self)
        self.selector.register(link, selectors.EVENT_READ)
        self.links.add(link)
        return link

    def opened(self, link: Link) -> None:
        """The 101 is in."""
        if self.mode == "websocketd":
            link.state = "until close"
        elif self.mode == "cycle":
            link.send(START)
            link.state = "running"
        else:
            link.state = "idle" if link.greeted else "greeting"

    def exited(self, link: Link) -> None:
        """The exit of the connection's process is in."""
        if self.mode == "cycle":
            link.send(CLOSE)
            link.state = "closing"
            return
        self._count()
        if self.running and time.monotonic() < self.stop_at:
            link.send(START)
        else:
            link.state = "idle"

    def finished(self, link: Link) -> None:
        """A cycle's connection is closed (procwire: its Close is in; websocketd: it closed)."""
        link.close()
        self.links.discard(link)
        self._count()
        if self.running and time.monotonic() < self.stop_at:
            self.open()

    def _count(self) -> None:
        if time.monotonic() <= self.stop_at:
            self.done += 1

    # -- the loop --------------------------------------------------------------------

    def set_up(self) -> None:
        """``starts``: open every connection and wait for its hello."""
        if self.mode != "starts":
            return
        for _ in range(self.connections):
            self.open()
        self._loop_until(lambda: all(link.state == "idle" for link in self.links), time.monotonic() + self.timeout)

    def run(self) -> None:
        self.running = True
        self.stop_at = time.monotonic() + self.seconds
        if self.mode == "starts":
            for link in self.links:
                link.send(START)
                link.state = "running"
        else:
            for _ in range(self.connections):
                self.open()
        self._loop_until(lambda: time.monotonic() >= self.stop_at, self.stop_at + 1)
        self.running = False
        # Finish what is in flight (uncounted), then close what stays open.
        self._loop_until(
            lambda: all(link.state in ("idle", "done") for link in self.links), time.monotonic() + self.timeout
        )
        for link in list(self.links):
            if link.state != "done":
                link.close()

    def _loop_until(self, condition: Any, deadline: float) -> None:
        while not condition():
            now = time.monotonic()
            if now > deadline:
                if self.running:
                    return  # the timed part ends at its deadline
                raise ClientError(f"timed out: {Counter(link.state for link in self.links)}")
            for key, _ in self.selector.select(timeout=min(0.2, max(deadline - now, 0.001))):
                key.fileobj.readable()  # type: ignore[union-attr]
            stuck = [link for link in self.links if link.state not in ("idle", "done")]
            if any(now - link.since > self.timeout for link in stuck):
                raise ClientError(f"no progress in {self.timeout} s: {Counter(link.state for link in stuck)}")


def main(argv: list[str]) -> int:
    client = Client(json.loads(argv[0]))
    errors: list[str] = []
    try:
        client.set_up()
    except (ClientError, OSError) as error:
        errors.append(f"set-up: {error}")
    print("ready", flush=True)
    go = sys.stdin.readline()
    started = time.monotonic()
    if go and not errors:
        try:
            client.run()
        except (ClientError, OSError) as error:
            errors.append(f"{type(error).__name__}: {error}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "done": client.done,
        "seconds": client.seconds,
        "elapsed": time.monotonic() - started,
        "nodes": dict(client.nodes),
        "cpu": usage.ru_utime + usage.ru_stime,
        "errors": errors,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
