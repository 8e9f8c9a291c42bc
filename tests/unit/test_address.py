"""What a user pastes as the server's address becomes its WebSocket URL and token."""

from __future__ import annotations

import pytest

from procwire_client.address import http_base, websocket_url


@pytest.mark.parametrize(
    ("given", "url", "token"),
    [
        ("ws://127.0.0.1:9999/ws", "ws://127.0.0.1:9999/ws", None),
        ("http://127.0.0.1:9999/", "ws://127.0.0.1:9999/ws", None),
        ("http://127.0.0.1:9999", "ws://127.0.0.1:9999/ws", None),
        ("https://example.org/procwire", "wss://example.org/procwire/ws", None),
        ("127.0.0.1:9999", "ws://127.0.0.1:9999/ws", None),
        ("ws://host/ws?token=abc", "ws://host/ws", "abc"),
        ("http://host:1/?token=a%2Fb&x=1", "ws://host:1/ws?x=1", "a/b"),
    ],
)
def test_websocket_url(given: str, url: str, token: str | None) -> None:
    assert websocket_url(given) == (url, token)


def test_the_http_base_of_a_websocket_url_is_its_inverse() -> None:
    assert http_base(websocket_url("https://example.org/procwire/")[0]) == "https://example.org/procwire"
