"""One behaviour suite for the three clients (sync, asyncio and JavaScript) against the real server.

Each test is written once and runs for each client (``kind``): the asyncio
client goes through AsyncAsSync below, which only awaits its coroutines; the
JavaScript one (clients/js/procwire.js, in Node) through tests/js_client_adapter.py,
which only translates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import threading
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

import procwire_client as pw
from tests.js_client_adapter import JsClient
from tests.server import Server, free_port, pid_exists, wait_until

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


# -- the suite ---------------------------------------------------------------------------------


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


def read_until(process: Any, needle: bytes) -> bytes:
    seen = b""
    for _, data in process.iter_output(BOUND):
        seen += data
        if needle in seen:
            return seen
    raise AssertionError(f"{needle!r} never came; got {seen!r}")


def test_hello_ping_lookpath(any_client: Any) -> None:
    assert any_client.hello["server"] == "procwire"
    assert len(any_client.client_id or "") == 16
    assert any_client.ping() > 0
    assert any_client.lookpath("sh").endswith("/sh")


def test_bad_token_is_an_authentication_error(new_client: Connect) -> None:
    with pytest.raises(pw.AuthenticationError) as raised:
        new_client(token="wrong-token")
    assert raised.value.status == 401 and "missing or wrong token" in str(raised.value)


def test_run_collects_output_input_and_exit_code(any_client: Any, tmp_path: os.PathLike[str]) -> None:
    result = any_client.run(
        ["sh", "-c", 'tr a-z A-Z; echo "$G" >&2; pwd; exit 3'], input="hi\n", env={"G": "g"}, cwd=tmp_path
    )
    assert (result.code, result.stdout, result.stderr) == (3, f"HI\n{tmp_path}\n".encode(), b"g\n")
    assert result.truncated == {"stdout": False, "stderr": False}


def test_run_past_max_output_raises_unless_truncate(any_client: Any) -> None:
    argv = ["sh", "-c", "printf 'abc\\377def'; printf '\\000' >&2"]
    with pytest.raises(pw.OutputTruncated) as raised:
        any_client.run(argv, max_output=4)
    truncated = any_client.run(argv, max_output=4, on_overflow="truncate")
    for result in (raised.value.result, truncated):
        assert (result.stdout, result.stderr, result.truncated) == (
            b"abc\xff",
            b"\x00",
            {"stdout": True, "stderr": False},
        )


def test_run_input_larger_than_one_message_is_streamed(any_client: Any) -> None:
    data = os.urandom(1 << 20) * 3
    assert any_client.run(["wc", "-c"], input=data).stdout.strip() == str(len(data)).encode()
    with pytest.raises(pw.OutputTruncated) as raised:
        any_client.run(["cat"], input=data, max_output=10)
    assert raised.value.result.stdout == data[:10]


def test_start_write_iterate_wait(any_client: Any) -> None:
    with any_client.start(["cat"]) as process:
        assert process.write("héllo\n") == 7
        assert process.write(b"\x00\xffraw") == 5
        process.close_stdin()
        assert collect(process) == {"stdout": "héllo\n".encode() + b"\x00\xffraw", "stderr": b""}
        status = process.wait(BOUND)
        assert status.ok and process.exit_status == status and process.offsets["stdout"] == 12
        with pytest.raises(pw.ProcessExited):
            process.write(b"late")


@pytest.mark.parametrize("binary", [False, True])
def test_streams_apart_in_json_and_binary(any_client: Any, binary: bool) -> None:
    process = any_client.start(["sh", "-c", "printf 'o\\377'; printf 'e\\000' >&2; exit 4"], binary=binary)
    assert collect(process) == {"stdout": b"o\xff", "stderr": b"e\x00"}
    assert process.wait(BOUND).code == 4
    assert process.offsets == {"stdout": 2, "stderr": 2}


def test_large_binary_stdin_round_trip(any_client: Any) -> None:
    data = os.urandom(3 << 20)
    with any_client.start(["cat"], binary=True) as process:
        assert process.communicate(data, timeout=BOUND) == (data, b"")


def test_many_processes_are_routed_apart(any_client: Any) -> None:
    processes = [any_client.start(["sh", "-c", f"for i in 1 2 3; do echo p{n}-$i; done; exit {n}"]) for n in range(6)]
    for n, process in enumerate(processes):
        assert collect(process)["stdout"].decode().split() == [f"p{n}-{i}" for i in (1, 2, 3)]
        assert process.wait(BOUND).code == n


def test_timeouts_leave_the_process_running(any_client: Any) -> None:
    with any_client.start(["sleep", "30"]) as process:
        with pytest.raises(pw.Timeout):
            process.wait(0.2)
        with pytest.raises(pw.Timeout):
            list(process.iter_output(0.2))
        with pytest.raises(pw.Timeout):
            any_client.wait(process.proc, 0.2)
        assert process.running
        assert process.stop("SIGTERM", 1).signal == "SIGTERM"


def test_typed_errors(any_client: Any) -> None:
    with pytest.raises(pw.NotFound) as not_found:
        any_client.start(["no-such-program"])
    assert not_found.value.data == {"errno": 2, "filename": "no-such-program"}
    with pytest.raises(pw.NoSuchProcess):
        any_client.signal(999_999, "TERM")
    with pytest.raises(pw.MethodNotFound):
        any_client.call("frobnicate")
    process = any_client.start(["sleep", "30"])
    with pytest.raises(pw.ProcessRunning):
        process.release()
    process.kill()
    assert process.wait(BOUND).signal == "SIGKILL"
    with pytest.raises(pw.ProcessExited):
        process.kill()
    process.release()
    assert any_client.ping() > 0


def test_refused_binary_stdin_lands_on_the_process(any_client: Any) -> None:
    with any_client.start(["sleep", "30"]) as process:
        process.close_stdin()
        with pytest.raises(pw.ProcessExited, match="stdin"):
            process.write(b"x", binary=True)  # sync: sent, refused later; async and js: refused here
            process.flush(BOUND)
        assert wait_until(lambda: process.stdin_error is not None, BOUND)
        assert isinstance(process.stdin_error, pw.ProcessExited)


def test_snapshot_attach_yields_the_screen_first(any_client: Any) -> None:
    with any_client.start(
        ["sh", "-c", "printf 'hello screen'; read x; printf ' after'; sleep 30"], pty=(5, 40), buffer=1 << 16
    ) as first:
        read_until(first, b"hello screen")
        again = any_client.attach(first.proc, snapshot=True)
        assert again.attachment.extra.get("screen") is True
        stream, screen = next(iter(again.iter_output(BOUND)))
        assert stream == "screen" and b"hello screen" in screen
        again.write("go\n")
        assert b" after" in read_until(again, b" after")
        assert again.offsets["stdout"] > len(b"hello screen")


def test_kept_process_replays_to_a_new_connection(new_client: Connect) -> None:
    first = new_client()
    kept = first.start(["sh", "-c", "echo one; read x; echo two; sleep 30"], on_disconnect="keep")
    read_until(kept, b"one\n")
    first.close()
    second = new_client()
    try:
        attached = second.attach(kept.proc)
        assert attached.attachment.state == "running" and not attached.attachment.truncated
        assert read_until(attached, b"one\n") == b"one\n"  # the replay
        attached.write("go\n")
        assert read_until(attached, b"two\n") == b"two\n"  # live
        assert attached.offsets["stdout"] == 8
        attached.detach()
        assert list(attached) == []
        again = second.attach(kept.proc, offset={"stdout": 4, "stderr": 0}, binary=True)
        assert read_until(again, b"two\n") == b"two\n"
    finally:
        second.kill(kept.proc)
    assert wait_until(lambda: not pid_exists(kept.pid))


def test_operator_disconnect_is_a_connection_error(new_client: Connect, server: Server) -> None:
    connected = new_client()
    process = connected.start(["sleep", "30"])
    request = urllib.request.Request(
        f"{server.http}/api/clients/{connected.client_id}",
        method="DELETE",
        headers={"Authorization": f"Bearer {server.token}"},
    )
    with urllib.request.urlopen(request, timeout=BOUND) as answer:
        assert json.load(answer) == {"closed": connected.client_id}
    with pytest.raises(pw.ProcwireConnectionError) as raised:
        process.wait(BOUND)
    assert raised.value.close_code == 4000 and "disconnected by an operator" in str(raised.value)
    with pytest.raises(pw.ProcwireConnectionError):
        connected.ping()
    assert connected.closed
    assert wait_until(lambda: not pid_exists(process.pid))


# -- resume after a dropped connection -----------------------------------------------------------


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


@pytest.mark.parametrize("binary", [False, True])
def test_reconnect_resumes_kept_processes_with_exact_bytes(new_client: Connect, server: Server, binary: bool) -> None:
    client = new_client(reconnect=True)
    first_id = client.client_id
    with client.start(["sh", "-c", WRITER], on_disconnect="keep", binary=binary) as process:
        received = {"stdout": b"", "stderr": b""}
        cuts = 0
        for stream, data in process.iter_output(BOUND):
            received[stream] += data
            if cuts < 2 and len(received["stdout"]) > (cuts + 1) * len(EXPECTED["stdout"]) // 3:
                cut(server, client.client_id)
                cuts += 1
        assert cuts == 2
        assert received == EXPECTED  # no byte lost, none repeated, across two drops
        assert process.wait(BOUND).ok
    assert client.reconnects == 2 and client.client_id != first_id
    assert client.ping() > 0


def test_reconnect_reports_processes_not_kept_and_fails_calls_in_flight(new_client: Connect, server: Server) -> None:
    client = new_client(reconnect=True)
    kept = client.start(["sleep", "30"], on_disconnect="keep")
    lost = client.start(["sleep", "30"])
    failures: list[BaseException] = []

    def wait_on_the_server() -> None:  # a call in flight when the connection drops
        try:
            client.wait(kept.proc, 30)
        except BaseException as error:
            failures.append(error)

    waiter = threading.Thread(target=wait_on_the_server)
    try:
        waiter.start()
        time.sleep(0.3)
        cut(server, client.client_id)
        with pytest.raises(pw.ProcwireConnectionError, match="not kept"):
            lost.wait(BOUND)
        waiter.join(BOUND)
        assert len(failures) == 1 and isinstance(failures[0], pw.ProcwireConnectionError)
        assert wait_until(lambda: client.reconnects == 1, BOUND)
        assert kept.running and client.ping() > 0
    finally:
        client.kill(kept.proc)
    assert kept.wait(BOUND).signal == "SIGKILL"


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


def test_reconnect_after_the_tcp_connection_is_killed(new_client: Connect, server: Server) -> None:
    proxy = CuttingProxy(server.port)
    try:
        client = new_client(url=proxy.url, reconnect=True)
        with client.start(["sh", "-c", WRITER], on_disconnect="keep", binary=True) as process:
            received = {"stdout": b"", "stderr": b""}
            for stream, data in process.iter_output(BOUND):
                received[stream] += data
                if client.reconnects == 0 and len(received["stdout"]) > len(EXPECTED["stdout"]) // 2:
                    proxy.cut()
                    assert wait_until(lambda: client.reconnects == 1, BOUND)
            assert received == EXPECTED
            assert process.wait(BOUND).ok
        client.close()
    finally:
        proxy.close()


def test_reconnect_gives_up_at_its_deadline(new_client: Connect, server: Server) -> None:
    proxy = CuttingProxy(server.port)
    client = new_client(url=proxy.url, reconnect=pw.Reconnect(delay=0.05, deadline=1.0))
    process = client.start(["sleep", "30"], on_disconnect="keep")
    try:
        proxy.close()  # the connection drops and there is no way back
        started = time.monotonic()
        with pytest.raises(pw.ProcwireConnectionError):
            process.wait(BOUND)
        assert time.monotonic() - started < 5
        assert client.closed and client.reconnects == 0
    finally:
        with pw.Client(server.url, server.token) as other:  # the kept process outlived it
            other.kill(process.proc)
            assert other.wait(process.proc, BOUND).signal == "SIGKILL"
            other.release(process.proc)
