"""The WebSocket opening handshake, answered without re-parsing the request.

simple-websocket rebuilds the HTTP request that gunicorn already parsed and
feeds it through wsproto's h11 handshake: about 140 µs of a connection's
critical path on a 2-core machine, more than gunicorn's own parsing.  A
plain upgrade (version 13, a valid key, no extension or subprotocol offered)
needs none of that: :class:`Server` checks the WSGI environ, sends the 101
itself and hands simple-websocket a wsproto connection already open.  Any
other request (compression offered with COMPRESSION on, a malformed one)
takes simple-websocket's own handshake, which negotiates or refuses it.

flask-sock builds its server from the name ``Server`` in its own module, so
:func:`use_in_flask_sock` puts this subclass there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

import flask_sock
import simple_websocket
from wsproto.connection import Connection, ConnectionType

ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
KEY_BYTES = 16


class Server(simple_websocket.Server):
    """simple-websocket's server, with the plain upgrade answered directly."""

    environ: dict[str, Any]

    def handshake(self) -> None:
        key = plain_upgrade_key(self.environ)
        if key is None:
            super().handshake()
            return
        self.ws = Connection(ConnectionType.SERVER)
        self.sock.sendall(switching_protocols(key))
        self.connected = True


def plain_upgrade_key(environ: dict[str, Any]) -> bytes | None:
    """The Sec-WebSocket-Key of a version-13 upgrade offering no extension
    and no subprotocol; None for anything else."""
    if environ.get("REQUEST_METHOD") != "GET" or environ.get("HTTP_SEC_WEBSOCKET_VERSION") != "13":
        return None
    if "HTTP_SEC_WEBSOCKET_EXTENSIONS" in environ or "HTTP_SEC_WEBSOCKET_PROTOCOL" in environ:
        return None
    if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
        return None
    if "upgrade" not in (token.strip().lower() for token in environ.get("HTTP_CONNECTION", "").split(",")):
        return None
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip().encode("ascii", "replace")
    try:
        if len(base64.b64decode(key, validate=True)) != KEY_BYTES:
            return None
    except binascii.Error:
        return None
    return key


def switching_protocols(key: bytes) -> bytes:
    accept = base64.b64encode(hashlib.sha1(key + ACCEPT_GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


def use_in_flask_sock() -> None:
    flask_sock.Server = Server
