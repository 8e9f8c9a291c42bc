"""Start-up behaviour of the real service: proxy addresses (through Flask's test client), stops,
a second server.

What ``make run`` prints and the development token: tests/test_first_run.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.client import RpcClient
from tests.flask_app import build_app, settings_for
from tests.server import ROOT, Server, pid_exists, wait_until


@pytest.mark.parametrize(("proxies", "seen"), [(0, "127.0.0.1"), (1, "203.0.113.9")])
def test_the_address_the_app_sees_follows_proxy_count(tmp_path: Path, proxies: int, seen: str) -> None:
    """Behind PROXY_COUNT trusted proxies the app takes the address the last one appended (never
    what the client wrote before it); without, the peer's.  Seen in a refusal's audit line here;
    in the registry, through gunicorn and nginx: tests/test_deploy.py and tests/test_connect.py."""
    audit_log = tmp_path / "audit.log"
    env = {"PROCWIRE_PROXY_COUNT": str(proxies), "PROCWIRE_AUDIT_LOG": str(audit_log)}
    client = build_app(settings_for(tmp_path / "state", env)).test_client()
    assert client.get("/api/clients", headers={"X-Forwarded-For": "10.9.9.9, 203.0.113.9"}).status_code == 401
    (refused,) = [json.loads(line) for line in audit_log.read_text().splitlines()]
    assert refused["remote_addr"] == seen


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
