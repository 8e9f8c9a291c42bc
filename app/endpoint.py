"""The WebSocket endpoint: ``GET /ws`` upgrades and runs a :class:`Session`."""

from __future__ import annotations

from flask import Flask, current_app, g, request
from flask_sock import Sock

from app.registry import registry
from app.session import Session

sock = Sock()


def init_app(app: Flask) -> None:
    settings = app.config["PROCWIRE"]
    app.config["SOCK_SERVER_OPTIONS"] = {
        "ping_interval": settings.PING_INTERVAL or None,
        "max_message_size": settings.MAX_MESSAGE_BYTES,
        "receive_bytes": 65536,
    }
    app.before_request(_refuse_compression)
    sock.init_app(app)


def _refuse_compression() -> None:
    """simple-websocket accepts permessage-deflate whenever offered; hide the
    offer unless COMPRESSION is on, since deflating streamed output costs CPU."""
    if request.path == "/ws" and not current_app.config["PROCWIRE"].COMPRESSION:
        request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


@sock.route("/ws")
def websocket(ws: object) -> None:
    Session(
        ws,
        owner=g.identity,
        remote_addr=request.remote_addr,
        settings=current_app.config["PROCWIRE"],
        registry=registry,
    ).run()
