"""Start-up behaviour of the real service: proxy addresses, stops, a second server.

What ``make run`` prints and the development token: tests/test_first_run.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from tests.client import RpcClient
from tests.server import ROOT, Server, pid_exists, wait_until


def registered_address(server: Server, client: RpcClient) -> str:
    """The remote address /api/clients shows for ``client``."""
    request = urllib.request.Request(f"{server.http}/api/clients", headers={"Authorization": f"Bearer {server.token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        clients = json.load(response)["clients"]
    (mine,) = [entry for entry in clients if entry["id"] == client.hello["params"]["client_id"]]
    return mine["remote_addr"]


def test_behind_a_trusted_proxy_the_registry_shows_the_forwarded_address() -> None:
    server = Server(env={"PROCWIRE_PROXY_COUNT": "1"}).start()
    try:
        with RpcClient(server.url, server.token, header=["X-Forwarded-For: 203.0.113.9"]) as client:
            assert registered_address(server, client) == "203.0.113.9"
    finally:
        server.stop()


def test_without_a_proxy_forwarded_headers_are_ignored(server: Server) -> None:
    with RpcClient(server.url, server.token, header=["X-Forwarded-For: 203.0.113.9"]) as client:
        assert registered_address(server, client) == "127.0.0.1"


def test_stopping_the_service_closes_sessions_with_1001_and_stops_their_processes() -> None:
    server = Server().start()
    try:
        client = RpcClient(server.url, server.token)
        pid = client.call("start", argv=["sleep", "1000"])["pid"]
        stopping = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        opcode, payload = client.ws.recv_data(control_frame=True)
        assert opcode == 8 and int.from_bytes(payload[:2], "big") == 1001
        server.process.wait(timeout=15)
        assert time.monotonic() - stopping < 10  # well inside graceful_timeout (30 s)
        assert not pid_exists(pid)
    finally:
        server.stop()


def test_a_worker_killed_by_sigkill_leaves_no_process_behind() -> None:
    server = Server().start()
    try:
        worker = server.worker_pids()[0]
        with RpcClient(server.url, server.token) as client:
            leader = client.call("start", argv=["sh", "-c", "sleep 1000 & echo $!; wait"])
            grandchild = int(client.next_message()["params"]["data"])
            kept = client.call("start", argv=["sleep", "1000"], on_disconnect="keep")
            os.kill(worker, signal.SIGKILL)
            pids = [leader["pid"], grandchild, kept["pid"]]
            assert wait_until(lambda: not any(pid_exists(pid) for pid in pids)), [p for p in pids if pid_exists(p)]
        assert wait_until(lambda: server.worker_pids() and server.worker_pids()[0] != worker)
        with RpcClient(server.url, server.token) as client:  # the new worker serves
            assert client.call("ping")["time"] > 0
    finally:
        server.stop()


def test_a_second_server_on_the_same_address_fails_instead_of_sharing_it() -> None:
    """With several workers each binds its own socket with SO_REUSEPORT (reuse_port), so the
    kernel would let a second server share the port: gunicorn.conf.py refuses it at start."""
    first = Server(env={"PROCWIRE_WORKERS": "2"}).start()
    try:
        env = dict(os.environ, PROCWIRE_BIND=f"127.0.0.1:{first.port}", PROCWIRE_WORKERS="2", PROCWIRE_TOKEN="t")
        second = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--no-control-socket"],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _, stderr = second.communicate(timeout=30)
        finally:
            if second.poll() is None:  # it started after all: stop it and its workers
                os.killpg(second.pid, signal.SIGKILL)
                second.wait(timeout=10)
        assert second.returncode != 0
        assert f"procwire: cannot listen on 127.0.0.1:{first.port}: Address already in use" in stderr
    finally:
        first.stop()


def test_a_stop_while_a_worker_boots_is_not_lost() -> None:
    """Stop the master right after it replaced a killed worker: the new worker may
    still be booting.  It must not hold the stop for GRACEFUL_TIMEOUT (20 s here)."""
    server = Server(env={"PROCWIRE_GRACEFUL_TIMEOUT": "20"}).start()
    try:
        (worker,) = server.worker_pids()
        os.kill(worker, signal.SIGKILL)
        assert wait_until(lambda: server.worker_pids() not in ([], [worker]), timeout=10)
        assert server.process is not None
        stopped_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=15)
        assert time.monotonic() - stopped_at < 10
    finally:
        server.stop()
