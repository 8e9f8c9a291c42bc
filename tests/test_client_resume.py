"""Resume after a dropped connection, for the three clients (``kind``, tests/client_kinds.py).

The connection is cut for real while a process writes a known byte sequence:
closed from the server's side, reset through a proxy, or gone for good; the
bytes received are compared exactly.
"""

from __future__ import annotations

import threading
import time

import pytest

import procwire_client as pw
from tests.client_kinds import BOUND, EXPECTED, WRITER, Connect, CuttingProxy, cut
from tests.server import Server, wait_until


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
