"""Connecting: tokens, origins, ``hello``, compression, the HTTP API and bad configuration.

Refusals before the upgrade and plain HTTP go through Flask's test client (``client``); what
needs a socket, a worker or a process through the real server (``server``)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from flask.testing import FlaskClient

from app.version import PROTOCOL_VERSION, __version__
from tests.client import RpcClient, read_close
from tests.flask_app import ADMIN_TOKEN, bearer, upgrade
from tests.server import ROOT, Server, free_port, pid_exists

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEFLATE_TAIL = b"\x00\x00\xff\xff"
CLOSE_BY_ADMIN = 4000
ALLOWED_ORIGIN = "https://console.example"

# What the ``configured`` server below is started with, as hello reports it.
CONFIGURED_LIMITS = {
    "max_message_bytes": 200_000,
    "max_stdin_chunk": 1000,
    "max_procs": 5,
    "kill_grace": 0.5,
    "drain_timeout": 1.5,
    "ping_interval": 7.0,
}


# -- helpers ---------------------------------------------------------------------

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(
    server: Server, method: str, path: str, *, token: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    """One plain HTTP request to ``server``: status, JSON body (or text), headers."""
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(server.http + path, method=method, headers=all_headers)
    try:
        with _opener.open(request, timeout=10) as response:
            status, body, response_headers = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, body, response_headers = error.code, error.read(), dict(error.headers)
    try:
        decoded: Any = json.loads(body)
    except ValueError:
        decoded = body.decode("utf-8", "replace")
    return status, decoded, response_headers


def handshake_status(url: str, **options: Any) -> int:
    """The HTTP status of a refused WebSocket handshake."""
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, timeout=10, **options).close()
    return refused.value.status_code


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def assert_accepted(server: Server, **options: Any) -> None:
    """The handshake succeeds with these websocket-client options, and the connection answers."""
    ws = websocket.create_connection(f"{server.url}?token={server.token}", timeout=10, **options)
    try:
        assert json.loads(ws.recv())["method"] == "hello"
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        assert "time" in json.loads(ws.recv())["result"]
    finally:
        ws.close()


def assert_usable(client: RpcClient) -> None:
    assert isinstance(client.call("ping")["time"], float)


class RawSocket:
    """A hand-made WebSocket client: enough to see the handshake and deflated frames."""

    def __init__(self, server: Server, *, token: str | None = "", extensions: str | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.key = base64.b64encode(os.urandom(16)).decode()
        token = server.token if token == "" else token
        target = "/ws" if token is None else f"/ws?token={token}"
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: 127.0.0.1:{server.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self.key}",
            "Sec-WebSocket-Version: 13",
        ]
        if extensions is not None:
            lines.append(f"Sec-WebSocket-Extensions: {extensions}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            assert chunk, f"connection closed during the handshake: {self.buffer!r}"
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self.deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(self._frame(0x8, struct.pack("!H", 1000), rsv1=False))
        self.sock.close()

    def __enter__(self) -> RawSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_frame(self) -> tuple[int, bool, bytes]:
        """One whole frame: opcode, whether RSV1 (compressed) is set, raw payload."""
        first, second = self._read_exactly(2)
        assert first & 0x80, "fragmented frames are not expected here"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exactly(8))
        assert not second & 0x80, "server frames are never masked"
        return first & 0x0F, bool(first & 0x40), self._read_exactly(length)

    def read_message(self) -> Any:
        """The next text message, inflated when compressed."""
        while True:
            opcode, compressed, payload = self.read_frame()
            if opcode == 0x9:  # a server ping: answer it, keep reading
                self.sock.sendall(self._frame(0xA, payload, rsv1=False))
                continue
            assert opcode == 0x1, opcode
            if compressed:
                payload = self.inflater.decompress(payload + DEFLATE_TAIL)
            return json.loads(payload)

    def send_message(self, message: Any, *, compress: bool) -> None:
        payload = json.dumps(message).encode()
        if compress:
            payload = self.deflater.compress(payload) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
            assert payload.endswith(DEFLATE_TAIL)
            payload = payload[: -len(DEFLATE_TAIL)]
        self.sock.sendall(self._frame(0x1, payload, rsv1=compress))

    @staticmethod
    def _frame(opcode: int, payload: bytes, *, rsv1: bool) -> bytes:
        first = 0x80 | (0x40 if rsv1 else 0) | opcode
        mask = os.urandom(4)
        if len(payload) < 126:
            header = struct.pack("!BB", first, 0x80 | len(payload))
        elif len(payload) < 1 << 16:
            header = struct.pack("!BBH", first, 0x80 | 126, len(payload))
        else:
            header = struct.pack("!BBQ", first, 0x80 | 127, len(payload))
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        return header + mask + masked


@pytest.fixture(scope="module")
def configured() -> Iterator[Server]:
    """A server with an allowed origin, compression on, and limits unlike the defaults."""
    server = Server(
        env={
            "PROCWIRE_ALLOWED_ORIGINS": json.dumps([ALLOWED_ORIGIN]),
            "PROCWIRE_COMPRESSION": "true",
            "PROCWIRE_MAX_MESSAGE_BYTES": str(CONFIGURED_LIMITS["max_message_bytes"]),
            "PROCWIRE_MAX_STDIN_CHUNK": str(CONFIGURED_LIMITS["max_stdin_chunk"]),
            "PROCWIRE_MAX_PROCS_PER_CLIENT": str(CONFIGURED_LIMITS["max_procs"]),
            "PROCWIRE_KILL_GRACE": str(CONFIGURED_LIMITS["kill_grace"]),
            "PROCWIRE_DRAIN_TIMEOUT": str(CONFIGURED_LIMITS["drain_timeout"]),
            "PROCWIRE_PING_INTERVAL": str(CONFIGURED_LIMITS["ping_interval"]),
        }
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- tokens -------------------------------------------------------------------------


def test_missing_token_is_401_without_upgrade(client: FlaskClient) -> None:
    assert upgrade(client).status_code == 401
    response = client.get("/ws")
    assert response.status_code == 401
    assert "token" in response.json["error"]
    assert response.headers.get("WWW-Authenticate", "").startswith("Bearer")


def test_raw_handshake_without_token_is_not_upgraded(server: Server) -> None:
    with RawSocket(server, token=None) as raw:
        assert raw.status == 401
        assert "sec-websocket-accept" not in raw.headers
        assert raw.headers.get("upgrade", "").lower() != "websocket"


@pytest.mark.parametrize("token", ["wrong-token", "test-toke", "test-token-", "TEST-TOKEN", ""])
def test_wrong_token_is_401(client: FlaskClient, token: str) -> None:
    assert upgrade(client, f"/ws?token={token}").status_code == 401
    assert upgrade(client, token=token).status_code == 401


def test_wrong_bearer_is_not_rescued_by_a_right_query_token(client: FlaskClient) -> None:
    assert upgrade(client, f"/ws?token={ADMIN_TOKEN}", "wrong").status_code == 401


def test_token_in_bearer_header(server: Server) -> None:
    with RpcClient(server.url, None, header=[f"Authorization: Bearer {server.token}"]) as client:
        assert client.hello["params"]["server"] == "procwire"
        assert_usable(client)
    with RpcClient(server.url, None, header=[f"authorization: bearer {server.token}"]) as client:
        assert_usable(client)


def test_token_in_query(server: Server) -> None:
    with RpcClient(server.url, server.token) as client:
        assert client.hello["params"]["server"] == "procwire"
        assert_usable(client)


def test_other_authorization_scheme_falls_back_to_query(server: Server) -> None:
    basic = base64.b64encode(b"user:pass").decode()
    assert handshake_status(server.url, header=[f"Authorization: Basic {basic}"]) == 401
    with RpcClient(server.url, server.token, header=[f"Authorization: Basic {basic}"]) as client:
        assert_usable(client)


# -- origins ---------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ["https://evil.example", "http://127.0.0.1:1", "http://localhost", "null"])
def test_origin_of_another_site_is_403(client: FlaskClient, origin: str) -> None:
    assert upgrade(client, f"/ws?token={ADMIN_TOKEN}", Origin=origin).status_code == 403
    response = client.get("/api/clients", headers=bearer(ADMIN_TOKEN, Origin=origin))
    assert response.status_code == 403
    assert origin in response.json["error"]


def test_wrong_token_and_wrong_origin_is_401(client: FlaskClient) -> None:
    assert upgrade(client, "/ws?token=wrong", Origin="https://evil.example").status_code == 401


def test_same_origin_is_accepted(server: Server) -> None:
    for origin in (f"http://127.0.0.1:{server.port}", f"http://127.0.0.1:{server.port}/"):
        assert_accepted(server, origin=origin)


def test_no_origin_is_accepted(server: Server) -> None:
    assert_accepted(server, suppress_origin=True)


def test_allowed_origin_is_accepted(configured: Server) -> None:
    for origin in (ALLOWED_ORIGIN, ALLOWED_ORIGIN + "/", ALLOWED_ORIGIN.upper()):
        assert_accepted(configured, origin=origin)
    assert_accepted(configured, origin=f"http://127.0.0.1:{configured.port}")
    for origin in ("https://other.example", "http://console.example", "https://console.example:8443"):
        assert handshake_status(f"{configured.url}?token={configured.token}", origin=origin) == 403


# -- hello ---------------------------------------------------------------------------------


def test_hello(server: Server) -> None:
    with RpcClient(server.url, server.token) as first, RpcClient(server.url, server.token) as second:
        hello = first.hello
        assert hello["jsonrpc"] == "2.0" and "id" not in hello
        params = hello["params"]
        assert params["server"] == "procwire"
        assert params["version"] == __version__ and isinstance(params["version"], str) and params["version"]
        assert params["protocol"] == PROTOCOL_VERSION == 1
        assert isinstance(params["client_id"], str) and params["client_id"]
        assert params["client_id"] != second.hello["params"]["client_id"]
        limits = params["limits"]
        assert limits["max_message_bytes"] == 1024 * 1024
        assert limits["max_stdin_chunk"] == 65536
        assert limits["max_procs"] == 64
        assert limits["kill_grace"] == 1
        assert limits["ping_interval"] == 25


def test_hello_limits_follow_the_configuration(configured: Server) -> None:
    with RpcClient(configured.url, configured.token) as client:
        limits = client.hello["params"]["limits"]
        for key, value in CONFIGURED_LIMITS.items():
            assert limits[key] == value, key


# -- HTTP -------------------------------------------------------------------------------------


def test_healthz_needs_no_token(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}
    assert client.get("/healthz", headers=bearer("wrong")).status_code == 200


@pytest.mark.parametrize("path", ["/api/clients", "/api/processes"])
def test_api_needs_the_token(client: FlaskClient, path: str) -> None:
    assert client.get(path).status_code == 401
    assert client.get(path, headers=bearer("wrong")).status_code == 401
    assert client.get(f"{path}?token=wrong").status_code == 401
    assert client.get(path, headers=bearer(ADMIN_TOKEN)).status_code == 200
    assert client.get(f"{path}?token={ADMIN_TOKEN}").status_code == 200


def test_api_lists_the_client_and_its_running_process(server: Server) -> None:
    with RpcClient(server.url, server.token) as client:
        client_id = client.hello["params"]["client_id"]
        started = client.call("start", argv=["sleep", "30"], name="api-listed")
        try:
            status, body, _headers = http(server, "GET", "/api/clients", token=server.token)
            assert status == 200
            mine = [entry for entry in body["clients"] if entry["id"] == client_id]
            assert len(mine) == 1, body
            assert mine[0]["remote_addr"] == "127.0.0.1"
            assert started["proc"] in mine[0]["processes"]
            assert abs(mine[0]["connected_at"] - time.time()) < 60

            status, body, _headers = http(server, "GET", "/api/processes", token=server.token)
            assert status == 200
            listed = [entry for entry in body["processes"] if entry["proc"] == started["proc"]]
            assert len(listed) == 1, body
            info = listed[0]
            assert info["pid"] == started["pid"] and info["pgid"] == started["pgid"]
            assert info["state"] == "running" and info["exit"] is None
            assert info["argv"] == ["sleep", "30"] and info["name"] == "api-listed"
            assert info["client"] == client_id
        finally:
            client.call("kill", proc=started["proc"])
            client.collect(started["proc"])
    # once the connection is gone, the registry forgets it
    assert wait_until(
        lambda: all(
            entry["id"] != client_id for entry in http(server, "GET", "/api/clients", token=server.token)[1]["clients"]
        )
    )


def test_forwarded_for_is_ignored_without_a_trusted_proxy(server: Server) -> None:
    with RpcClient(server.url, server.token, header=["X-Forwarded-For: 10.1.2.3"]) as client:
        client_id = client.hello["params"]["client_id"]
        clients = http(server, "GET", "/api/clients", token=server.token)[1]["clients"]
        assert [entry["remote_addr"] for entry in clients if entry["id"] == client_id] == ["127.0.0.1"]


def test_plain_get_of_ws_is_a_bad_request(client: FlaskClient) -> None:
    assert client.get("/ws", headers=bearer(ADMIN_TOKEN)).status_code == 400
    assert client.get("/healthz").status_code == 200


def test_delete_client_closes_its_websocket_and_stops_its_processes(server: Server) -> None:
    with RpcClient(server.url, server.token) as bystander, RpcClient(server.url, server.token) as victim:
        client_id = victim.hello["params"]["client_id"]
        started = victim.call("start", argv=["sleep", "1000"])
        pid = started["pid"]
        try:
            assert http(server, "DELETE", f"/api/clients/{client_id}")[0] == 401
            assert pid_exists(pid)
            status, body, _headers = http(server, "DELETE", f"/api/clients/{client_id}", token=server.token)
            assert status == 200, body
            code, _reason = read_close(victim.ws)
            assert code == CLOSE_BY_ADMIN
            assert wait_until(lambda: not pid_exists(pid)), f"pid {pid} still exists"
            assert wait_until(
                lambda: all(
                    entry["id"] != client_id
                    for entry in http(server, "GET", "/api/clients", token=server.token)[1]["clients"]
                )
            )
            status, body, _headers = http(server, "GET", "/api/processes", token=server.token)
            assert all(entry["pid"] != pid for entry in body["processes"])
            # other connections carry on
            assert_usable(bystander)
            assert http(server, "DELETE", f"/api/clients/{client_id}", token=server.token)[0] == 404
        finally:
            if pid_exists(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(started["pgid"], signal.SIGKILL)


def test_delete_unknown_client_is_404(client: FlaskClient) -> None:
    response = client.delete("/api/clients/no-such-client", headers=bearer(ADMIN_TOKEN))
    assert response.status_code == 404
    assert "no-such-client" in response.json["error"]


# -- compression -------------------------------------------------------------------------------


def test_compression_is_refused_by_default(server: Server) -> None:
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
    ws = websocket.create_connection(f"{server.url}?token={server.token}", timeout=10, header=[offer])
    try:
        headers = {name.lower(): value for name, value in ws.getheaders().items()}
        assert "sec-websocket-extensions" not in headers, headers
        assert json.loads(ws.recv())["method"] == "hello"  # a plain, uncompressed frame
    finally:
        ws.close()
    with RawSocket(server, extensions="permessage-deflate") as raw:
        assert raw.status == 101
        assert "sec-websocket-extensions" not in raw.headers
        opcode, compressed, payload = raw.read_frame()
        assert (opcode, compressed) == (0x1, False)
        assert json.loads(payload)["method"] == "hello"


def test_compression_is_accepted_when_configured(configured: Server) -> None:
    with RawSocket(configured, extensions="permessage-deflate; client_max_window_bits") as raw:
        assert raw.status == 101
        expected_accept = base64.b64encode(hashlib.sha1((raw.key + WS_GUID).encode()).digest()).decode()
        assert raw.headers["sec-websocket-accept"] == expected_accept
        assert "permessage-deflate" in raw.headers.get("sec-websocket-extensions", "")
        opcode, compressed, payload = raw.read_frame()
        assert (opcode, compressed) == (0x1, True)
        hello = json.loads(raw.inflater.decompress(payload + DEFLATE_TAIL))
        assert hello["method"] == "hello"
        # a compressed request gets a compressed answer, and an uncompressed one too
        raw.send_message({"jsonrpc": "2.0", "id": 1, "method": "ping"}, compress=True)
        assert "time" in raw.read_message()["result"]
        raw.send_message({"jsonrpc": "2.0", "id": 2, "method": "ping"}, compress=False)
        assert raw.read_message()["id"] == 2
        # output notifications go through the same (compressed) path
        raw.send_message(
            {"jsonrpc": "2.0", "id": 3, "method": "start", "params": {"argv": ["echo", "hi"]}}, compress=True
        )
        messages = [raw.read_message() for _ in range(3)]
        assert messages[0]["id"] == 3
        assert messages[1]["method"] == "output" and messages[1]["params"]["data"] == "hi\n"
        assert messages[2]["method"] == "exit" and messages[2]["params"]["code"] == 0


def test_no_compression_when_not_offered_even_if_configured(configured: Server) -> None:
    with RawSocket(configured) as raw:
        assert raw.status == 101
        assert "sec-websocket-extensions" not in raw.headers
        opcode, compressed, _payload = raw.read_frame()
        assert (opcode, compressed) == (0x1, False)


# -- bad configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("PROCWIRE_KILL_GRACE", "abc", "KILL_GRACE"),
        ("PROCWIRE_KILL_GRACE", "-1", "KILL_GRACE"),
        ("PROCWIRE_MAX_MESSAGE_BYTES", "10", "MAX_MESSAGE_BYTES"),
        ("PROCWIRE_COMPRESSION", "maybe", "COMPRESSION"),
        ("PROCWIRE_MAX_PROCS_PER_CLIENT", "0", "MAX_PROCS_PER_CLIENT"),
        ("PROCWIRE_NO_SUCH_SETTING", "1", "NO_SUCH_SETTING"),
        ("PROCWIRE_CONFIG", "/nonexistent/procwire.toml", "PROCWIRE_CONFIG"),
    ],
)
def test_bad_configuration_stops_start_up_with_one_line(variable: str, value: str, key: str) -> None:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    command = [str(gunicorn)] if gunicorn.exists() else [sys.executable, "-m", "gunicorn"]
    env = {name: text for name, text in os.environ.items() if not name.startswith("PROCWIRE_")}
    env.update(PROCWIRE_BIND=f"127.0.0.1:{free_port()}", PROCWIRE_TOKEN="test-token", PROCWIRE_LOG_LEVEL="warning")
    env[variable] = value
    process = subprocess.Popen(
        [*command, "-c", "gunicorn.conf.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    assert process.returncode != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert key in lines[0], lines[0]
