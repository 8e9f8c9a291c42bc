"""Every plain HTTP route once through the real server (gunicorn, its gevent worker, a socket) and
once through Flask's test client, answering alike: the HTTP tests run on the test client, and this
module keeps the two from drifting apart (a header set by a WSGI layer only one of them has, a
route the worker never registers, a body encoded differently).

Both are procwire with default settings but for their admin tokens (the session's ``server``, the
plugin's shared server, has a token of its own; the ``client`` fixture's app has ``test-token``).
A body is compared when nothing else the session does changes it; otherwise its media type and its
JSON keys are.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import pytest
from flask.testing import FlaskClient

from tests.flask_app import ADMIN_TOKEN, UPGRADE_HEADERS, bearer
from tests.server import Server

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Set by procwire for the browser's sake: the same through either.
COMPARED_HEADERS = (
    "Content-Type",
    "Content-Security-Policy",
    "Referrer-Policy",
    "X-Content-Type-Options",
    "Cache-Control",
    "Access-Control-Allow-Origin",
    "WWW-Authenticate",
)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    status: int
    admin: bool = False  # with the side's admin token (the session server's is its own)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    same_body: bool = True  # False: the session's other tests change it (counters, connections, processes)

    def __str__(self) -> str:
        return f"{self.method} {self.path} {'with' if self.admin else 'without'} token: {self.status}"


ROUTES = [
    Route("GET", "/healthz", 200),
    Route("GET", "/metrics", 401),
    Route("GET", "/metrics", 200, admin=True, same_body=False),
    Route("GET", "/api/whoami", 200, admin=True),
    Route("GET", "/api/clients", 401),
    Route("GET", "/api/clients", 200, admin=True, same_body=False),
    Route("GET", "/api/processes", 200, admin=True, same_body=False),
    Route("DELETE", "/api/clients/no-such-client", 404, admin=True),
    Route("GET", "/api/recordings", 200, admin=True, same_body=False),
    Route("GET", "/api/recordings/no-such-recording", 404, admin=True),
    Route("GET", "/", 200),
    Route("POST", "/", 401),
    Route("GET", "/console/main.js", 200),
    Route("GET", "/vendor/xterm.js", 200),
    Route("GET", "/vendor/package.json", 404),
    Route("GET", "/client/procwire.js", 200),
    Route("POST", "/console/redeem", 403, headers={"Content-Type": "application/json"}, body=b'{"code": "wrong"}'),
    Route("GET", "/ws", 401, headers=UPGRADE_HEADERS),
    Route("GET", "/ws", 400, admin=True),  # a plain GET of the WebSocket route
]


@dataclass
class Answer:
    status: int
    headers: dict[str, str | None]
    body: bytes


def through_gunicorn(server: Server, route: Route) -> Answer:
    request = urllib.request.Request(
        server.http + route.path,
        data=route.body,
        method=route.method,
        headers=bearer(server.token if route.admin else None, **route.headers),
    )
    try:
        with _opener.open(request, timeout=10) as response:
            status, headers, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, body = error.code, error.headers, error.read()
    return Answer(status, {name: headers.get(name) for name in COMPARED_HEADERS}, body)


def through_the_test_client(client: FlaskClient, route: Route) -> Answer:
    response = client.open(
        route.path,
        method=route.method,
        data=route.body,
        headers=bearer(ADMIN_TOKEN if route.admin else None, **route.headers),
    )
    return Answer(response.status_code, {name: response.headers.get(name) for name in COMPARED_HEADERS}, response.data)


def json_keys(body: bytes) -> object:
    decoded = json.loads(body)
    return sorted(decoded) if isinstance(decoded, dict) else type(decoded).__name__


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_the_route_answers_alike_through_gunicorn_and_the_test_client(
    server: Server, client: FlaskClient, route: Route
) -> None:
    real, tested = through_gunicorn(server, route), through_the_test_client(client, route)
    assert real.status == tested.status == route.status, (real.body[:200], tested.body[:200])
    assert real.headers == tested.headers
    if route.same_body:
        assert real.body == tested.body
    elif real.headers["Content-Type"] == "application/json":
        assert json_keys(real.body) == json_keys(tested.body)
    else:
        assert real.body and tested.body
