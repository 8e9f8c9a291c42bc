"""The shipped deployment, for real: deploy/nginx.conf under nginx in front of gunicorn.

Each test renders deploy/nginx.conf itself (only file paths, addresses and, where
a test says so, two timeouts change), starts the real nginx on a free loopback
port and a real gunicorn behind it, and stops both by their pids.  nginx is
required: ``make test`` installs Debian's package when it runs as root.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websocket

from config import Settings
from tests.client import RpcClient, read_close
from tests.nginx import Nginx, nginx_binary, render_nginx_conf
from tests.server import ROOT, Server, children_of, pid_exists, wait_until

UNIT_FILE = ROOT / "deploy" / "procwire.service"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
STREAM = ["sh", "-c", "while true; do echo x; sleep 0.05; done"]
STREAM_IGNORING_SIGTERM = ["sh", "-c", "trap '' TERM; while true; do echo y; sleep 0.05; done"]
# Another loopback address: what nginx sees as the client, unlike gunicorn,
# whose peer is nginx on 127.0.0.1 (or a UNIX socket).
CLIENT_ADDRESS = "127.0.0.5"


@dataclass
class UnixSocketServer(Server):
    """The same gunicorn bound to a UNIX socket; its health is checked through nginx."""

    socket_path: str = ""
    front: str = ""

    @property
    def http(self) -> str:
        return self.front

    def start(self) -> UnixSocketServer:
        self.env = {**self.env, "PROCWIRE_BIND": f"unix:{self.socket_path}"}
        super().start()
        return self


@dataclass
class Deployment:
    server: Server
    nginx: Nginx

    def client(self, **options: Any) -> RpcClient:
        return RpcClient(self.nginx.url, self.server.token, **options)


BASE_ENV = {"PROCWIRE_PROXY_COUNT": "1", "PROCWIRE_PING_INTERVAL": "1", "PROCWIRE_KILL_GRACE": "1"}


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    """Start gunicorn and nginx in front of it; everything started is stopped at the end."""
    with contextlib.ExitStack() as stack:

        def start(
            *, env: dict[str, str] | None = None, unix: bool = False, log: Any = None, **render: str
        ) -> Deployment:
            server_env = {**BASE_ENV, **(env or {})}
            nginx = Nginx(tmp_path)
            if unix:
                # A short directory: a UNIX socket path must fit in 108 bytes.
                socket_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="procwire-"))
                socket_path = f"{socket_dir}/gunicorn.sock"
                conf = render_nginx_conf(
                    tmp_path, listen=f"127.0.0.1:{nginx.port}", upstream=f"unix:{socket_path}", **render
                )
                stack.callback(nginx.stop)
                nginx.start(conf)
                server: Server = UnixSocketServer(env=server_env, socket_path=socket_path, front=nginx.http)
                stack.callback(server.stop)
                server.start()
            else:
                server = Server(env=server_env, stderr=log)
                stack.callback(server.stop)
                server.start()
                conf = render_nginx_conf(
                    tmp_path, listen=f"127.0.0.1:{nginx.port}", upstream=f"127.0.0.1:{server.port}", **render
                )
                stack.callback(nginx.stop)
                nginx.start(conf)
            return Deployment(server, nginx)

        yield start


def get_json(url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
        return json.load(response)


def registered_addresses(deployment: Deployment) -> dict[str, str]:
    """Client id to remote address, as /api/clients shows them through nginx."""
    clients = get_json(f"{deployment.nginx.http}/api/clients", deployment.server.token)["clients"]
    return {entry["id"]: entry["remote_addr"] for entry in clients}


def connect_from(
    source: str, deployment: Deployment, header: list[str] | None = None
) -> tuple[websocket.WebSocket, str]:
    """A WebSocket to nginx from the loopback address ``source``; the socket and its client id."""
    sock = socket.create_connection(("127.0.0.1", deployment.nginx.port), timeout=10, source_address=(source, 0))
    ws = websocket.create_connection(
        f"{deployment.nginx.url}?token={deployment.server.token}", socket=sock, header=header or [], timeout=10
    )
    hello = json.loads(ws.recv())
    assert hello["method"] == "hello"
    return ws, hello["params"]["client_id"]


def first_output(client: RpcClient, proc: int) -> None:
    """Wait for ``proc``'s first output notification (others stay queued)."""
    kept: list[Any] = []
    try:
        while True:
            message = client.next_message()
            if isinstance(message, dict) and message.get("method") == "output" and message["params"]["proc"] == proc:
                return
            kept.append(message)
    finally:
        client.pending.extendleft(reversed(kept))


def wait_for_drop(ws: websocket.WebSocket, timeout: float) -> float:
    """Answer pings until the peer drops the TCP connection (no Close frame); seconds waited."""
    started = time.monotonic()
    ws.settimeout(timeout)
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        while time.monotonic() - started < timeout:
            opcode, frame = ws.recv_data_frame(control_frame=True)
            assert opcode != websocket.ABNF.OPCODE_CLOSE, bytes(frame.data)
    return time.monotonic() - started


# -- the shipped nginx.conf -----------------------------------------------------------


def test_the_shipped_nginx_conf_passes_nginx_t(tmp_path: Path) -> None:
    """Only its file paths moved: the listen and upstream addresses and timeouts are the shipped ones."""
    conf = render_nginx_conf(tmp_path)
    result = subprocess.run(
        [nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@pytest.mark.parametrize("upstream", ["tcp", "unix"])
def test_a_full_session_through_nginx(deploy: Callable[..., Deployment], upstream: str) -> None:
    deployment = deploy(unix=upstream == "unix")
    assert get_json(f"{deployment.nginx.http}/healthz") == {"status": "ok"}
    with deployment.client() as client:
        collected = client.run_to_exit(["echo", "hi"])
        assert collected.stdout == b"hi\n"
        assert collected.exit["code"] == 0
        assert client.call("ping")["time"] > 0
    # The session's access log line, written when it ended, leaves the token out.
    access_log = deployment.nginx.directory / "access.log"
    assert wait_until(lambda: '"GET /ws HTTP/1.1" 101 ' in access_log.read_text())
    assert deployment.server.token not in access_log.read_text()


@pytest.mark.parametrize("upstream", ["tcp", "unix"])
def test_the_registry_shows_the_address_nginx_saw_never_a_spoofed_one(
    deploy: Callable[..., Deployment], upstream: str
) -> None:
    # gunicorn's peer is nginx (127.0.0.1, or no address at all over the UNIX
    # socket): 127.0.0.5 can only come from X-Forwarded-For.  With PROXY_COUNT=1
    # the app takes the entry nginx appended, not what the client wrote before it.
    deployment = deploy(unix=upstream == "unix")
    plain, plain_id = connect_from(CLIENT_ADDRESS, deployment)
    spoofing, spoofing_id = connect_from(CLIENT_ADDRESS, deployment, ["X-Forwarded-For: 203.0.113.9"])
    try:
        with deployment.client() as local:
            addresses = registered_addresses(deployment)
            assert addresses[plain_id] == CLIENT_ADDRESS
            assert addresses[spoofing_id] == CLIENT_ADDRESS
            assert addresses[local.hello["params"]["client_id"]] == "127.0.0.1"
    finally:
        plain.close()
        spoofing.close()


def test_a_browser_on_the_proxy_origin_is_same_origin_and_others_are_refused(
    deploy: Callable[..., Deployment],
) -> None:
    # nginx passes the Host the browser sent ($http_host, port included), so
    # the app's same-origin check compares it with Origin as a browser would.
    deployment = deploy()
    target = f"{deployment.nginx.url}?token={deployment.server.token}"
    same_origin = websocket.create_connection(target, origin=f"http://127.0.0.1:{deployment.nginx.port}", timeout=10)
    try:
        assert json.loads(same_origin.recv())["method"] == "hello"
    finally:
        same_origin.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(target, origin="https://evil.example", timeout=10)
    assert refused.value.status_code == 403


def fetch(url: str, **request: Any) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, **request), timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_console_and_its_one_time_link_through_nginx(deploy: Callable[..., Deployment], tmp_path: Path) -> None:
    """``location /`` serves the page, its files and xterm.js (installed by ``npm ci``: without it
    /vendor/ answers 503 and the Terminal tab stays blank); the link's code works on nginx's address."""
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log:
        deployment = deploy(env={"PROCWIRE_STATE_DIR": str(tmp_path / "state")}, log=log)
        assert wait_until(lambda: "?code=" in log_path.read_text(errors="replace"))
    (code,) = re.findall(r"/\?code=(\S+)", log_path.read_text())
    front = deployment.nginx.http
    status, headers, page = fetch(f"{front}/?code={code}")
    assert status == 200 and b"<html" in page.lower() and "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    status, headers, _ = fetch(f"{front}/vendor/xterm.js")
    assert status == 200 and "javascript" in headers["Content-Type"], "run `npm ci` (make install) first"
    assert fetch(f"{front}/console/main.js")[0] == 200  # the page's entry module
    # What the page does with the code: POST it, same origin (nginx passes the browser's Host).
    redeem = {
        "data": json.dumps({"code": code}).encode(),
        "headers": {"Content-Type": "application/json", "Origin": front},
        "method": "POST",
    }
    status, _, body = fetch(f"{front}/console/redeem", **redeem)
    assert (status, json.loads(body)) == (200, {"token": deployment.server.token})
    assert fetch(f"{front}/console/redeem", **redeem)[0] == 403  # once only
    origin = f"http://127.0.0.1:{deployment.nginx.port}"
    same_origin = websocket.create_connection(
        f"{deployment.nginx.url}?token={json.loads(body)['token']}", origin=origin
    )
    try:
        assert json.loads(same_origin.recv())["method"] == "hello"
    finally:
        same_origin.close()


def test_an_idle_session_outlives_proxy_read_timeout_thanks_to_pings(deploy: Callable[..., Deployment]) -> None:
    deployment = deploy(env={"PROCWIRE_PING_INTERVAL": "0.5"}, read_timeout="2s")
    with deployment.client() as client:
        pings = 0
        client.ws.settimeout(2)
        idle_until = time.monotonic() + 4  # twice nginx's proxy_read_timeout, not a message sent
        while time.monotonic() < idle_until:
            opcode, frame = client.ws.recv_data_frame(control_frame=True)  # answers pings with pongs
            assert opcode == websocket.ABNF.OPCODE_PING, (opcode, bytes(frame.data))
            pings += 1
        assert pings >= 4
        client.ws.settimeout(10)
        assert client.call("ping")["time"] > 0


def test_without_pings_nginx_drops_an_idle_session_and_its_processes_stop(deploy: Callable[..., Deployment]) -> None:
    """The control for the test above: proxy_read_timeout really bites, and the app cleans up."""
    deployment = deploy(env={"PROCWIRE_PING_INTERVAL": "0"}, read_timeout="2s")
    with deployment.client() as client:
        client_id = client.hello["params"]["client_id"]
        pid = client.call("start", argv=["sleep", "1000"])["pid"]
        waited = wait_for_drop(client.ws, timeout=10)
        assert 1.5 < waited < 8
    assert wait_until(lambda: not pid_exists(pid))
    assert wait_until(lambda: client_id not in registered_addresses(deployment))


def test_an_nginx_reload_ends_sessions_after_worker_shutdown_timeout(deploy: Callable[..., Deployment]) -> None:
    deployment = deploy(shutdown_timeout="1s")
    client = deployment.client()
    try:
        pid = client.call("start", argv=["sleep", "1000"])["pid"]
        deployment.nginx.reload()
        waited = wait_for_drop(client.ws, timeout=15)
        assert waited < 10
    finally:
        client.close()
    assert wait_until(lambda: not pid_exists(pid))
    with deployment.client() as again:  # the new nginx workers serve the reconnection
        assert again.run_to_exit(["echo", "back"]).stdout == b"back\n"


@pytest.mark.parametrize("workers", [1, 2])
def test_stopping_gunicorn_closes_streaming_sessions_with_1001_through_nginx(
    deploy: Callable[..., Deployment], workers: int
) -> None:
    grace = 20
    env = {"PROCWIRE_WORKERS": str(workers), "PROCWIRE_GRACEFUL_TIMEOUT": str(grace)}
    deployment = deploy(env=env)
    server = deployment.server
    assert server.process is not None
    assert wait_until(lambda: len(server.worker_pids()) == workers)
    clients = [deployment.client() for _ in range(4)]
    pids = []
    try:
        for index, client in enumerate(clients):
            argv = STREAM_IGNORING_SIGTERM if index == 0 else STREAM
            started = client.call("start", argv=argv)
            pids.append(started["pid"])
            first_output(client, started["proc"])
        stopping = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        for client in clients:
            code, reason = read_close(client.ws, timeout=grace)
            assert code == 1001, reason
        server.process.wait(timeout=grace + 10)
        assert time.monotonic() - stopping < grace / 2
        assert wait_until(lambda: not any(pid_exists(pid) for pid in pids), timeout=5), [
            pid for pid in pids if pid_exists(pid)
        ]
    finally:
        for client in clients:
            client.close()
    # A restarted gunicorn on the same address: clients reconnect through the same nginx.
    restarted = Server(env=server.env, port=server.port)
    try:
        restarted.start()
        with deployment.client() as again:
            assert again.run_to_exit(["echo", "back"]).stdout == b"back\n"
    finally:
        restarted.stop()


def test_a_gunicorn_reload_closes_sessions_with_1001_and_serves_reconnections(
    deploy: Callable[..., Deployment],
) -> None:
    """``systemctl reload procwire`` (SIGHUP): new workers, the same master and listening socket."""
    deployment = deploy()
    server = deployment.server
    assert server.process is not None
    (old_worker,) = server.worker_pids()
    with deployment.client() as client:
        started = client.call("start", argv=STREAM)
        first_output(client, started["proc"])
        server.process.send_signal(signal.SIGHUP)
        code, reason = read_close(client.ws, timeout=15)
        assert code == 1001, reason
    assert wait_until(lambda: not pid_exists(started["pid"]))
    assert wait_until(lambda: not pid_exists(old_worker))
    assert server.process.poll() is None
    with deployment.client() as again:
        assert again.run_to_exit(["echo", "back"]).stdout == b"back\n"
    assert server.worker_pids() != [old_worker]


# -- gunicorn.conf.py and deploy/procwire.service -----------------------------------------


def gunicorn_config(argv: list[str], env: dict[str, str]) -> dict[str, str]:
    """gunicorn's resolved settings (``--print-config``) for these arguments and PROCWIRE_* variables."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("PROCWIRE_")}
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", *argv, "--print-config"],
        cwd=ROOT,
        env={**clean, "PROCWIRE_TOKEN": "t", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return dict(re.findall(r"^(\w+)\s+= (.*)$", result.stdout, re.MULTILINE))


def test_gunicorn_takes_workers_and_graceful_timeout_from_the_settings() -> None:
    defaults = gunicorn_config(["-c", "gunicorn.conf.py"], {})
    assert (defaults["workers"], defaults["graceful_timeout"]) == ("1", "30")
    assert (defaults["worker_class"], defaults["max_requests"]) == ("gevent", "0")
    configured = gunicorn_config(
        ["-c", "gunicorn.conf.py"], {"PROCWIRE_WORKERS": "3", "PROCWIRE_GRACEFUL_TIMEOUT": "17"}
    )
    assert (configured["workers"], configured["graceful_timeout"]) == ("3", "17")


def test_a_bad_worker_count_stops_gunicorn_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--print-config"],
        cwd=ROOT,
        env={**os.environ, "PROCWIRE_TOKEN": "t", "PROCWIRE_WORKERS": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "procwire: bad configuration: WORKERS: " in result.stderr


def unit_entries() -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit file, values in order (comments and sections dropped)."""
    entries: dict[str, list[str]] = {}
    for line in UNIT_FILE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        entries.setdefault(key, []).append(value)
    return entries


def test_the_unit_stops_gracefully_within_its_timeout() -> None:
    (install,) = re.findall(r"^WorkingDirectory=(.+)$", UNIT_FILE.read_text(), re.MULTILINE)
    entries = unit_entries()
    assert entries["KillMode"] == ["mixed"]
    assert entries["KillSignal"] == ["SIGTERM"]
    assert entries["Restart"] == ["on-failure"]
    assert entries["Type"] == ["notify"]
    environment = dict(value.split("=", 1) for value in entries["Environment"])
    assert environment["PROCWIRE_PROXY_COUNT"] == "1"  # exactly the one nginx hop of deploy/nginx.conf

    # ExecStart, run here (in this checkout) up to its resolved configuration.
    (exec_start,) = entries["ExecStart"]
    program, *arguments = shlex.split(exec_start.replace(install, str(ROOT)))
    assert program == str(ROOT / ".venv" / "bin" / "gunicorn")
    runtime = tempfile.mkdtemp(prefix="procwire-run-")
    try:
        arguments = [argument.replace("/run/procwire", runtime) for argument in arguments]
        resolved = gunicorn_config(arguments, environment)
    finally:
        shutil.rmtree(runtime)
    assert resolved["bind"] == "['127.0.0.1:9999']"
    assert resolved["control_socket"] == f"{runtime}/gunicorn.ctl"
    settings = Settings()
    assert int(resolved["graceful_timeout"]) == settings.GRACEFUL_TIMEOUT
    # systemd's SIGKILL must come after gunicorn's own grace, which covers KILL_GRACE.
    (stop_timeout,) = entries["TimeoutStopSec"]
    assert int(stop_timeout) >= settings.GRACEFUL_TIMEOUT + 10
    assert settings.GRACEFUL_TIMEOUT > settings.KILL_GRACE + settings.DRAIN_TIMEOUT + 5


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    (install,) = re.findall(r"^WorkingDirectory=(.+)$", UNIT_FILE.read_text(), re.MULTILINE)
    unit = tmp_path / "procwire.service"
    unit.write_text(UNIT_FILE.read_text().replace(install, str(ROOT)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "procwire.service" not in result.stderr, result.stderr


def test_the_deployment_guide_describes_every_setting() -> None:
    guide = DEPLOY_DOC.read_text()
    missing = [key for key in Settings.model_fields if f"`{key}`" not in guide]
    assert not missing, f"docs/deploy.md does not describe: {missing}"


def test_stopping_nginx_by_its_pid_leaves_no_worker(tmp_path: Path) -> None:
    """What the fixture's finalizer relies on: the master takes its workers along."""
    nginx = Nginx(tmp_path)
    try:
        nginx.start(render_nginx_conf(tmp_path, listen=f"127.0.0.1:{nginx.port}"))
        assert nginx.process is not None
        master = nginx.process.pid
        assert wait_until(lambda: children_of(master) != [])
        workers = children_of(master)
    finally:
        nginx.stop()
    assert not pid_exists(master)
    assert not any(pid_exists(pid) for pid in workers)
