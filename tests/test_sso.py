"""Single sign-on against the real server (docs/security.md, "Single sign-on").

JWTs are signed by keys the tests make and published by a JWKS endpoint the
tests serve on loopback; the auth-proxy header goes through the real nginx
(deploy/nginx.conf with its single sign-on includes) and a small auth
endpoint standing in for oauth2-proxy.  Every refusal is a 401 before the
upgrade, with an audit line: those go through Flask's test client of an app
with the same settings (the JWKS still served on loopback).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import websocket
from flask.testing import FlaskClient

from tests.client import RpcClient
from tests.flask_app import bearer, build_app, settings_for, upgrade
from tests.jwt_keys import AUDIENCE, ISSUER, SigningKey, hmac_with_public_key, jwks, unsigned, usual_claims
from tests.nginx import Nginx, render_nginx_conf
from tests.program_client import converse, http_json, refused_status
from tests.server import Server

RS, ES = SigningKey("rs-1"), SigningKey("es-1", "ES256")
ROLES = {"ops": "admin", "devs": "user"}
PROXY_SECRET = "a-secret-only-nginx-knows"
SESSIONS = {"alice-cookie": ("alice", "devs"), "olga-cookie": ("olga", "ops,devs")}  # what the auth endpoint knows
WHOAMI = ["sh", "-c", 'echo "user=$REMOTE_USER"']


# -- a small HTTP server on loopback: the JWKS, and the auth endpoint ----------------------------------------------


Answer = Callable[[str, dict[str, str]], tuple[int, dict[str, str], bytes]]


@dataclass
class LocalHttp:
    """Answers GETs with ``answer(path, headers)`` on 127.0.0.1, counting requests by path."""

    answer: Answer
    requests: list[str] = field(default_factory=list)

    def __enter__(self) -> LocalHttp:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                status, headers, body = outer.answer(self.path, dict(self.headers.items()))
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"


class Provider:
    """The identity provider's JWKS, which a test may rotate."""

    def __init__(self) -> None:
        self.document = jwks(RS, ES)

    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path != "/jwks":
            return 404, {}, b""
        return 200, {"Content-Type": "application/json"}, json.dumps(self.document).encode()


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def refusals(path: Path, rule: str) -> list[str]:
    return [line["message"] for line in audit_lines(path) if line["event"] == "refused" and line.get("rule") == rule]


def upgrade_status(url: str, token: str | None = None, header: list[str] | None = None) -> int:
    """The HTTP status of a refused upgrade to /ws (it must be refused)."""
    target = f"{url}?token={token}" if token is not None else url
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(target, header=header or [], timeout=10).close()
    return refused.value.status_code


# -- JWTs ----------------------------------------------------------------------------------------------------------


@dataclass
class JwtSetup:
    server: Server
    provider: Provider
    jwks_http: LocalHttp
    audit_log: Path

    def fetches(self) -> int:
        return self.jwks_http.requests.count("/jwks")


def jwt_env(jwks_http: LocalHttp, audit_log: Path) -> dict[str, str]:
    """JWTs of the provider whose JWKS ``jwks_http`` serves, and a program for users."""
    table = {
        "jwks_url": f"http://{jwks_http.address}/jwks",
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "algorithms": ["RS256", "ES256"],
        "roles": ROLES,
        "jwks_refresh_seconds": 0,
    }
    return {
        "PROCWIRE_JWT": json.dumps(table),
        "PROCWIRE_AUDIT_LOG": str(audit_log),
        "PROCWIRE_PROGRAMS": json.dumps({"whoami": {"argv": WHOAMI, "roles": ["user"]}}),
    }


@pytest.fixture(scope="module")
def jwt_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JwtSetup]:
    base = tmp_path_factory.mktemp("sso-jwt")
    provider = Provider()
    with LocalHttp(provider.answer) as jwks_http:
        server = Server(env=jwt_env(jwks_http, base / "audit.log")).start()
        try:
            yield JwtSetup(server, provider, jwks_http, base / "audit.log")
        finally:
            server.stop()


@pytest.fixture(scope="module")
def apps_jwks() -> Iterator[LocalHttp]:
    """The provider's JWKS for the apps of ``jwt_client`` (never rotated)."""
    with LocalHttp(Provider().answer) as jwks_http:
        yield jwks_http


@pytest.fixture
def jwt_client(apps_jwks: LocalHttp, tmp_path: Path) -> FlaskClient:
    """Flask's test client of an app with the same settings; its audit log: ``tmp_path/audit.log``."""
    return build_app(settings_for(tmp_path / "state", jwt_env(apps_jwks, tmp_path / "audit.log"))).test_client()


def test_a_jwt_from_the_jwks_opens_the_websocket_as_its_holder(jwt_setup: JwtSetup) -> None:
    url = jwt_setup.server.url
    with RpcClient(url, None, header=[f"Authorization: Bearer {RS.sign()}"]) as alice:
        assert alice.hello["params"]["identity"] == {"name": "alice", "role": "user"}
        refused = alice.error_of("start", argv=["echo", "hi"])  # the role's policy: by default users run nothing
        assert refused.code == -32003 and "role user" in refused.message
    with RpcClient(url, ES.sign(sub="olga", groups=["ops"])) as olga:  # ?token=, as browsers send it
        assert olga.hello["params"]["identity"] == {"name": "olga", "role": "admin"}
        assert olga.run_to_exit(["echo", "hi"]).stdout == b"hi\n"
    assert jwt_setup.fetches() >= 1


def test_the_http_api_and_programs_take_jwts_too(jwt_setup: JwtSetup) -> None:
    http = jwt_setup.server.http
    assert http_json(f"{http}/api/whoami", RS.sign()) == (200, {"name": "alice", "role": "user"})
    assert http_json(f"{http}/api/processes", RS.sign())[0] == 403  # not an admin
    assert http_json(f"{http}/api/processes", RS.sign(groups=["ops"]))[0] == 200
    program = jwt_setup.server.url.replace("/ws", "/programs/whoami")
    assert converse(program, RS.sign(sub="bob")).messages == ["user=bob"]
    assert refused_status(program, RS.sign(exp=int(time.time()) - 600)) == (401, "JWT: Signature has expired")


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda: RS.sign(exp=int(time.time()) - 600), "JWT: Signature has expired"),
        (lambda: RS.sign(nbf=int(time.time()) + 600), "JWT: The token is not yet valid (nbf)"),
        (lambda: RS.sign(iss="https://elsewhere.test"), "JWT: Invalid issuer"),
        (lambda: RS.sign(aud="another-service"), "JWT: Audience doesn't match"),
        (lambda: SigningKey("rs-1").sign(), "JWT: Signature verification failed"),  # the same kid, another key
        (lambda: unsigned(usual_claims(), "rs-1"), "JWT: algorithm 'none' is not one of"),
        (lambda: hmac_with_public_key(usual_claims(), RS), "JWT: algorithm 'HS256' is not one of"),
        (lambda: SigningKey("rs-1", "RS384").sign(), "JWT: algorithm 'RS384' is not one of"),
        (lambda: RS.sign(groups=["visitors"]), "JWT: no role"),
    ],
)
def test_each_bad_jwt_is_refused_before_the_upgrade_and_audited(
    jwt_client: FlaskClient, tmp_path: Path, make: Callable[[], str], says: str
) -> None:
    token, audit_log = make(), tmp_path / "audit.log"
    before = len(refusals(audit_log, "jwt"))
    assert upgrade(jwt_client, f"/ws?token={token}").status_code == 401
    assert upgrade(jwt_client, token=token).status_code == 401
    response = jwt_client.get("/api/whoami", headers=bearer(token))
    assert response.status_code == 401 and response.json["error"].startswith(says)
    found = refusals(audit_log, "jwt")[before:]
    assert len(found) == 3 and all(message.startswith(says) for message in found)
    assert token not in audit_log.read_text()


def test_an_unknown_kid_fetches_the_rotated_keys(jwt_setup: JwtSetup) -> None:
    new = SigningKey("rs-2")
    url = jwt_setup.server.url
    with RpcClient(url, RS.sign()):
        pass
    jwt_setup.provider.document = jwks(new, ES)  # the provider rotates rs-1 out
    try:
        before = jwt_setup.fetches()
        with RpcClient(url, new.sign(sub="carol")) as carol:
            assert carol.hello["params"]["identity"]["name"] == "carol"
        assert jwt_setup.fetches() == before + 1
        with RpcClient(url, new.sign()):
            pass
        assert jwt_setup.fetches() == before + 1  # known now: no fetch
        assert upgrade_status(url, RS.sign()) == 401
        assert "JWT: no key 'rs-1'" in refusals(jwt_setup.audit_log, "jwt")[-1]
    finally:
        jwt_setup.provider.document = jwks(RS, ES)


# -- the auth proxy's header, through nginx -------------------------------------------------------------------------


def auth_endpoint(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """oauth2-proxy's /oauth2/auth, reduced: a known session cookie is 202 with the user and groups, else 401."""
    if not path.startswith("/oauth2/auth"):
        return 404, {}, b""
    cookie = headers.get("Cookie", "").removeprefix("session=")
    if cookie not in SESSIONS:
        return 401, {}, b""
    user, groups = SESSIONS[cookie]
    return 202, {"X-Auth-Request-User": user, "X-Auth-Request-Groups": groups}, b""


@dataclass
class ProxySetup:
    server: Server
    nginx: Nginx
    auth: LocalHttp
    audit_log: Path


def proxy_env(audit_log: Path) -> dict[str, str]:
    """The identity nginx's auth request vouches for, behind its secret; a program for users."""
    table = {"secret_sha256": hashlib.sha256(PROXY_SECRET.encode()).hexdigest(), "roles": ROLES}
    env = {"PROCWIRE_PROXY_COUNT": "1", "PROCWIRE_AUTH_PROXY": json.dumps(table)}
    env["PROCWIRE_PROGRAMS"] = json.dumps({"env": {"argv": ["env"], "roles": ["user"]}})
    env["PROCWIRE_AUDIT_LOG"] = str(audit_log)
    return env


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxySetup]:
    base = tmp_path_factory.mktemp("sso-proxy")
    with contextlib.ExitStack() as stack:
        auth = stack.enter_context(LocalHttp(auth_endpoint))
        server = Server(env=proxy_env(base / "audit.log"))
        stack.callback(server.stop)
        server.start()
        nginx = Nginx(base)
        conf = render_nginx_conf(
            base,
            listen=f"127.0.0.1:{nginx.port}",
            upstream=f"127.0.0.1:{server.port}",
            sso=(auth.address, PROXY_SECRET),
        )
        stack.callback(nginx.stop)
        nginx.start(conf)
        yield ProxySetup(server, nginx, auth, base / "audit.log")


@pytest.fixture
def proxy_client(tmp_path: Path) -> FlaskClient:
    """Flask's test client of an app with the same settings, reached straight (no nginx in front);
    its audit log: ``tmp_path/audit.log``."""
    return build_app(settings_for(tmp_path / "state", proxy_env(tmp_path / "audit.log"))).test_client()


def test_signed_in_by_the_proxy_no_token_needed(proxied: ProxySetup) -> None:
    alice = ["Cookie: session=alice-cookie"]
    with RpcClient(proxied.nginx.url, None, header=alice) as ws:
        assert ws.hello["params"]["identity"] == {"name": "alice", "role": "user"}
    with RpcClient(proxied.nginx.url, None, header=["Cookie: session=olga-cookie"]) as ws:
        assert ws.hello["params"]["identity"] == {"name": "olga", "role": "admin"}
        assert ws.run_to_exit(["echo", "hi"]).stdout == b"hi\n"
    assert any(path.startswith("/oauth2/auth") for path in proxied.auth.requests)


def test_headers_the_client_sends_are_replaced_by_the_proxy(proxied: ProxySetup) -> None:
    forged = ["Cookie: session=alice-cookie", "X-Forwarded-User: olga", "X-Forwarded-Groups: ops"]
    with RpcClient(proxied.nginx.url, None, header=forged) as ws:
        assert ws.hello["params"]["identity"] == {"name": "alice", "role": "user"}
    # Without a session, nginx's auth_request stops the request before procwire: off to sign in.
    connection = http.client.HTTPConnection("127.0.0.1", proxied.nginx.port, timeout=10)
    try:
        connection.request("GET", "/ws", headers=dict(header.split(": ", 1) for header in forged[1:]))
        response = connection.getresponse()
        assert response.status == 302 and str(response.getheader("Location")).endswith("/oauth2/start?rd=/ws")
    finally:
        connection.close()


FORGED = {"X-Forwarded-User": "olga", "X-Forwarded-Groups": "ops", "X-Forwarded-For": "127.0.0.1"}


def test_the_header_sent_straight_to_the_app_is_ignored(proxy_client: FlaskClient, tmp_path: Path) -> None:
    audit_log = tmp_path / "audit.log"
    before = len(refusals(audit_log, "auth_proxy"))
    assert upgrade(proxy_client, **FORGED).status_code == 401
    assert upgrade(proxy_client, **FORGED, **{"X-Procwire-Proxy-Secret": "guessed"}).status_code == 401
    response = proxy_client.get("/api/whoami")  # no header: just no identity
    assert response.status_code == 401 and response.json["error"] == "missing or wrong token"
    # ... and not audited: every console page load asks so
    assert not [line for line in audit_lines(audit_log) if line.get("path") == "/api/whoami"]
    found = refusals(audit_log, "auth_proxy")[before:]
    assert found == [
        "X-Forwarded-User ignored: X-Procwire-Proxy-Secret is missing",
        "X-Forwarded-User ignored: X-Procwire-Proxy-Secret is wrong",
    ]


def test_the_secret_sent_straight_to_gunicorn_is_what_tells_the_proxy_apart(proxied: ProxySetup) -> None:
    """The same secret from anywhere but nginx's side works (without it: the test above)."""
    forged = [f"{name}: {value}" for name, value in FORGED.items()]
    with RpcClient(proxied.server.url, None, header=[*forged, f"X-Procwire-Proxy-Secret: {PROXY_SECRET}"]) as ws:
        assert ws.hello["params"]["identity"]["name"] == "olga"


def test_a_program_sees_the_user_never_the_proxy_secret(proxied: ProxySetup) -> None:
    program = proxied.nginx.url.replace("/ws", "/programs/env")
    seen = converse(program, header=["Cookie: session=alice-cookie"]).messages
    assert "REMOTE_USER=alice" in seen and "HTTP_X_FORWARDED_USER=alice" in seen
    assert not [line for line in seen if PROXY_SECRET in str(line) or "PROXY_SECRET" in str(line)]


def test_tokens_still_work_behind_the_proxy(proxied: ProxySetup) -> None:
    with RpcClient(proxied.nginx.url, proxied.server.token, header=["Cookie: session=alice-cookie"]) as ws:
        assert ws.hello["params"]["identity"] == {"name": "default", "role": "admin"}
    status, body = http_json(f"{proxied.nginx.http}/healthz")
    assert (status, body) == (200, {"status": "ok"})


def test_the_console_signs_in_through_the_proxy_without_a_token(proxied: ProxySetup) -> None:
    """Behind the proxy the page never asks for a token: it finds itself signed in and connects."""
    from tests.console_page import CHROMIUM, CHROMIUM_ARGS, Console, admin_request, expect, playwright_api

    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (make test installs it)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "session", "value": "olga-cookie", "url": proxied.nginx.http}])
            console = Console(browser, proxied.nginx.http, context=context).open()
            try:
                console.wait_up()
                expect(console.page.locator("#login")).to_be_hidden()
                assert console.page.evaluate("sessionStorage.getItem('procwire.token')") is None
                client_id = console.client_id()
                clients = admin_request(proxied.server, "GET", "/api/clients")["clients"]
                assert {entry["id"]: entry["owner"] for entry in clients}[client_id] == "olga"
            finally:
                console.close()
                context.close()
        finally:
            browser.close()
