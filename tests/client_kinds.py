"""The three clients (sync, asyncio and JavaScript) in one shape, for suites written once.

Loaded as a plugin (``pytest_plugins = ["tests.client_kinds"]``) by the client
suites: its fixtures give each test a client of every ``kind``.  The asyncio
client goes through :class:`AsyncAsSync`, which only awaits its coroutines;
the JavaScript one (clients/js/procwire.js, in Node) through
tests/js_client_adapter.py, which only translates.  Also here: a process
writing a known byte sequence, and a proxy whose connections can be killed,
for the resume tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

import procwire_client as pw
from tests.js_client_adapter import JsClient
from tests.server import Server, free_port

BOUND = 15.0
Connect = Callable[..., Any]


# -- the asyncio client in the sync client's shape ---------------------------------------------
#
# AsyncAsSync runs the asyncio client's coroutines on an event loop in a thread of its own and
# hands back their results: a test body calls client.run(...) or iterates over a process the
# same way for both clients. The behaviour under test is the async client's own: it only awaits.


class LoopThread:
    """An event loop running in a daemon thread; ``run`` awaits a coroutine there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 4 * BOUND) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(BOUND)
        self.loop.close()


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class AsyncAsSync:
    """An :class:`AsyncClient` or :class:`AsyncProcess` whose coroutines are run to their result."""

    def __init__(self, target: Any, loop: LoopThread) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value
        return self._blocking(value)

    def _blocking(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            result = self._loop.run(_awaited(function(*args, **kwargs)))
            return AsyncAsSync(result, self._loop) if isinstance(result, pw.AsyncProcess) else result

        return call

    def __repr__(self) -> str:
        return f"AsyncAsSync({self._target!r})"

    # -- a process's iteration and context ----------------------------------------------

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        return self.iter_output()

    def iter_output(self, timeout: float | None = None) -> Iterator[tuple[str, bytes]]:
        iterator = self._target.iter_output(timeout)
        while True:
            try:
                yield self._loop.run(_awaited(iterator.__anext__()))
            except StopAsyncIteration:
                return

    def __enter__(self) -> AsyncAsSync:
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.run(self._target.__aexit__(*exc))


def connect(kind: str, url: str, token: str | None, loop: LoopThread, **options: Any) -> Any:
    """A connected client of ``kind`` ("sync", "async" or "js"), with the sync client's shape."""
    if kind == "sync":
        return pw.Client(url, token, **options)
    if kind == "js":
        return JsClient(url, token, **options)
    return AsyncAsSync(loop.run(pw.AsyncClient(url, token, **options).connect()), loop)


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    running = LoopThread()
    yield running
    running.stop()


@pytest.fixture(params=["sync", "async", "js"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def new_client(kind: str, server: Server, loop: LoopThread) -> Iterator[Connect]:
    """Connects clients of this test's kind (closed at the end)."""
    opened: list[Any] = []

    def make(url: str | None = None, token: str | None = None, **options: Any) -> Any:
        client = connect(kind, url or server.url, token or server.token, loop, **options)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


@pytest.fixture
def any_client(new_client: Connect) -> Any:
    return new_client()


def collect(process: Any) -> dict[str, bytes]:
    streams = {"stdout": b"", "stderr": b""}
    for stream, data in process.iter_output(BOUND):
        streams[stream] += data
    return streams


def read_until(process: Any, needle: bytes, timeout: float = BOUND) -> bytes:
    """Output of ``process`` (all streams) up to and including ``needle``."""
    seen = b""
    for _, data in process.iter_output(timeout):
        seen += data
        if needle in seen:
            return seen
    raise AssertionError(f"{needle!r} never came; got {seen!r}")


# -- for the resume tests ------------------------------------------------------------------------


def cut(server: Server, client_id: str) -> None:
    """Close a connection from the server's side (an operator's disconnect, code 4000)."""
    request = urllib.request.Request(
        f"{server.http}/api/clients/{client_id}", method="DELETE", headers={"Authorization": f"Bearer {server.token}"}
    )
    with urllib.request.urlopen(request, timeout=BOUND) as answer:
        assert json.load(answer) == {"closed": client_id}


COUNT = 300
WRITER = f"i=0; while [ $i -lt {COUNT} ]; do echo out-$i; echo err-$i >&2; i=$((i+1)); sleep 0.005; done"
EXPECTED = {
    "stdout": b"".join(b"out-%d\n" % i for i in range(COUNT)),
    "stderr": b"".join(b"err-%d\n" % i for i in range(COUNT)),
}


class CuttingProxy:
    """A loopback TCP proxy to the server whose connections can be killed (RST, no Close frame)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._forward(client)

    def _forward(self, client: socket.socket) -> None:
        """Pass ``client``'s connection on to the server, both ways."""
        upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=BOUND)
        upstream.settimeout(None)
        with self.lock:
            self.sockets += [client, upstream]
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)  # pass the end of the stream on

    def cut(self) -> None:
        """Reset every connection through the proxy, both ways."""
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for sock in sockets:
            self.reset(sock)

    @staticmethod
    def reset(sock: socket.socket) -> None:
        """Close ``sock`` with an RST (no FIN, no Close frame)."""
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv on it
        sock.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.listener.close()
        self.cut()
