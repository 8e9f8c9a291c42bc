"""Program connections, taken before Flask's dispatch.

A WSGI middleware in front of the Flask app: a request for
``/programs/...`` (or an upgrade at ``/`` when ``PROGRAMS_ROOT`` is set) is
checked by the :class:`~app.programs.gate.Gate` and, admitted, upgraded and
run as a :class:`~app.programs.session.ProgramSession` right here; every
other request goes to Flask untouched.  Skipping Flask's routing, request
context and ``before_request`` chain is what a connect-run-close cycle
needs to keep up with websocketd, and ``/`` stays the console's page for a
browser while being the program's WebSocket URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from werkzeug.wrappers import Request, Response

from app.edge.handshake import Server
from app.programs.gate import Gate, Refusal
from app.programs.session import ProgramSession
from app.registry.base import Registry
from app.security.auth import refused_http
from config import Settings

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ProgramDispatch:
    """The WSGI app in front of Flask's: program connections here, the rest there."""

    def __init__(
        self, flask_app: WsgiApp, gate: Gate, settings: Settings, registry: Registry, sock_options: Mapping[str, Any]
    ) -> None:
        self.flask_app = flask_app
        self.gate = gate
        self.settings = settings
        self.registry = registry
        self.sock_options = dict(sock_options)
        self.root = bool(settings.PROGRAMS_ROOT)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not (path.startswith("/programs") or (self.root and path == "/" and is_upgrade(environ))):
            return self.flask_app(environ, start_response)
        request = Request(environ)
        verdict = self.gate.admit(request)
        if verdict is None:
            return self.flask_app(environ, start_response)
        if isinstance(verdict, Refusal):
            refused_http(verdict.status, verdict.rule, verdict.message, verdict.token, request)
            return refusal_response(verdict)(environ, start_response)
        try:
            if not is_upgrade(environ):
                message = "a program is reached with a WebSocket upgrade (GET with Upgrade: websocket)"
                return refusal_response(Refusal(400, "upgrade", message))(environ, start_response)
            ws = Server(environ, **self.sock_options)
            ProgramSession(ws, verdict, environ, self.settings, self.registry).run()
        finally:
            verdict.release()
        raise StopIteration  # gunicorn's way of "the response was written": the socket was ours


def is_upgrade(environ: Mapping[str, Any]) -> bool:
    return str(environ.get("HTTP_UPGRADE", "")).lower() == "websocket"


def refusal_response(refusal: Refusal) -> Response:
    response = Response(orjson.dumps({"error": refusal.message}), status=refusal.status, mimetype="application/json")
    if refusal.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="procwire"'
    return response
