"""The direct answer to a plain WebSocket upgrade (app/edge/handshake.py)."""

from __future__ import annotations

from typing import Any

import flask_sock
import pytest
from wsproto.connection import Connection, ConnectionState
from wsproto.events import TextMessage

from app import create_app
from app.edge.handshake import Server, plain_upgrade_key, switching_protocols
from app.edge.wire import NoReader
from config.settings import Settings

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455, section 1.3


def upgrade(**changes: Any) -> dict[str, Any]:
    environ = {
        "REQUEST_METHOD": "GET",
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "keep-alive, Upgrade",
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
        "HTTP_SEC_WEBSOCKET_KEY": RFC_KEY,
    }
    environ.update(changes)
    return {key: value for key, value in environ.items() if value is not None}


def test_the_rfc_example_is_answered_with_its_accept_value() -> None:
    key = plain_upgrade_key(upgrade())
    assert key == RFC_KEY.encode()
    assert switching_protocols(key) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )


def test_header_values_are_matched_without_case() -> None:
    assert plain_upgrade_key(upgrade(HTTP_UPGRADE="WebSocket", HTTP_CONNECTION="UPGRADE")) is not None


@pytest.mark.parametrize(
    "changes",
    [
        {"REQUEST_METHOD": "POST"},
        {"HTTP_SEC_WEBSOCKET_VERSION": "8"},
        {"HTTP_SEC_WEBSOCKET_VERSION": None},
        {"HTTP_UPGRADE": "h2c"},
        {"HTTP_CONNECTION": "keep-alive"},
        {"HTTP_SEC_WEBSOCKET_KEY": None},
        {"HTTP_SEC_WEBSOCKET_KEY": "not base64!"},
        {"HTTP_SEC_WEBSOCKET_KEY": "c2hvcnQ="},  # 5 bytes, not 16
        {"HTTP_SEC_WEBSOCKET_EXTENSIONS": "permessage-deflate"},
        {"HTTP_SEC_WEBSOCKET_PROTOCOL": "chat"},
    ],
)
def test_anything_else_takes_simple_websockets_own_handshake(changes: dict[str, Any]) -> None:
    assert plain_upgrade_key(upgrade(**changes)) is None


class FakeSocket:
    def __init__(self) -> None:
        self.sent = b""

    def send(self, data: bytes) -> int:
        self.sent += data
        return len(data)

    def sendall(self, data: bytes) -> None:
        self.sent += data


def accept(**changes: Any) -> tuple[Any, FakeSocket]:
    sock = FakeSocket()
    environ = {**upgrade(**changes), "gunicorn.socket": sock, "HTTP_HOST": "127.0.0.1"}
    return Server(environ, thread_class=NoReader), sock


def test_a_plain_upgrade_is_answered_directly_and_the_connection_is_open() -> None:
    ws, sock = accept()
    assert sock.sent == switching_protocols(RFC_KEY.encode())
    assert isinstance(ws.ws, Connection) and ws.ws.state is ConnectionState.OPEN
    assert ws.ws.send(TextMessage("hi")) == b"\x81\x02hi"  # frames like any open connection


def test_a_compression_offer_is_negotiated_by_simple_websocket() -> None:
    ws, sock = accept(HTTP_SEC_WEBSOCKET_EXTENSIONS="permessage-deflate")
    assert sock.sent.startswith(b"HTTP/1.1 101 ")
    assert b"permessage-deflate" in sock.sent.lower()
    assert not isinstance(ws.ws, Connection)  # wsproto's handshake object, now open


def test_the_app_gives_flask_sock_this_server() -> None:
    create_app(Settings(TOKEN="unit-test-token"))
    assert flask_sock.Server is Server
