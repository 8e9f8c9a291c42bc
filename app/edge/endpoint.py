"""The WebSocket endpoint: ``GET /ws`` upgrades and runs a :class:`Session`.

Before the upgrade, the connection takes a slot of its token and of its
address (app.connections): over a limit, it gets HTTP 429 instead.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, g, jsonify, request
from flask_sock import Sock

from app.edge import handshake
from app.edge.session import Session
from app.edge.wire import NoReader
from app.registry import registry_of
from app.security.auth import SHARES_KEY, refused_http
from app.security.connections import slots

sock = Sock()


def init_app(app: Flask) -> None:
    settings = app.config["PROCWIRE"]
    app.config["SOCK_SERVER_OPTIONS"] = {
        "ping_interval": None,  # app/edge/keepalive.py pings every connection from one greenlet
        "max_message_size": settings.MAX_MESSAGE_BYTES,
        "receive_bytes": 65536,
        "thread_class": NoReader,  # the session reads (app/edge/wire.py)
    }
    app.before_request(_refuse_compression)
    app.before_request(_take_connection_slot)
    app.teardown_request(_release_connection_slot)
    handshake.use_in_flask_sock()
    sock.init_app(app)


def _refuse_compression() -> None:
    """simple-websocket accepts permessage-deflate whenever offered; hide the
    offer unless COMPRESSION is on, since deflating streamed output costs CPU."""
    if request.path == "/ws" and not current_app.config["PROCWIRE"].COMPRESSION:
        request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


def _take_connection_slot() -> Response | None:
    settings = current_app.config["PROCWIRE"]
    if request.path != "/ws" or "identity" not in g:
        return None
    if not (settings.MAX_CONNECTIONS_PER_TOKEN or settings.MAX_CONNECTIONS_PER_ADDRESS):
        return None
    name = g.identity.name
    elsewhere = registry_of(current_app).connections_elsewhere(name) if settings.MAX_CONNECTIONS_PER_TOKEN else 0
    refusal = slots.take(
        name, request.remote_addr, settings.MAX_CONNECTIONS_PER_TOKEN, settings.MAX_CONNECTIONS_PER_ADDRESS, elsewhere
    )
    if refusal is not None:
        rule, message = refusal
        refused_http(429, rule, message, name)
        response = jsonify(error=message)
        response.status_code = 429
        return response
    g.connection_slot = (name, request.remote_addr)
    return None


def _release_connection_slot(error: BaseException | None) -> None:
    slot = g.pop("connection_slot", None)
    if slot is not None:
        slots.release(*slot)


@sock.route("/ws")
def websocket(ws: object) -> None:
    Session(
        ws,
        identity=g.identity,
        remote_addr=request.remote_addr,
        settings=current_app.config["PROCWIRE"],
        registry=registry_of(current_app),
        shares=current_app.extensions[SHARES_KEY],
    ).run()
