"""procwire's Flask app for Flask's test client: built in-process from explicit settings (no
gunicorn, no gevent patching, nothing read from the process's environment), and the requests
the HTTP tests send.

The ``app`` and ``client`` fixtures (tests/conftest.py) use :func:`build_app` with
:func:`settings_for`; a module that needs other settings overrides ``app`` with its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import create_app
from config import Settings, load_settings

ADMIN_TOKEN = "test-token"  # TOKEN: the admin named "default", as tests/server.py's Server
HOST = "127.0.0.1:9999"  # where the test client's requests go, as if to a server on loopback
# What a browser or websocket-client sends to open /ws (or a program): refusals come before the upgrade.
UPGRADE_HEADERS = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def settings_for(state_dir: Path, env: Mapping[str, str] | None = None) -> Settings:
    """The settings tests/server.py's ``Server`` would give gunicorn: the admin token and
    ``state_dir``, no audit log, then ``env`` (``PROCWIRE_*`` values, ``PROCWIRE_CONFIG`` naming a
    TOML file), read from these mappings only, never from the process's environment."""
    defaults = {"PROCWIRE_TOKEN": ADMIN_TOKEN, "PROCWIRE_STATE_DIR": str(state_dir), "PROCWIRE_AUDIT_LOG": ""}
    return load_settings({**defaults, **(env or {})})


def build_app(settings: Settings) -> Flask:
    """The app as a worker builds it, in testing mode (an error in a view is raised, not a 500),
    addressed as a server on ``HOST`` (the same-origin check compares Origin with Host)."""
    app = create_app(settings)
    app.config.update(TESTING=True, SERVER_NAME=HOST)
    return app


def bearer(token: str | None, **headers: str) -> dict[str, str]:
    """``headers`` with ``Authorization: Bearer token`` (none without a token)."""
    return headers if token is None else {"Authorization": f"Bearer {token}", **headers}


def upgrade(client: FlaskClient, path: str = "/ws", token: str | None = None, **headers: str) -> TestResponse:
    """A WebSocket upgrade request that must be refused before the upgrade (an accepted one needs a
    worker's socket: tests/server.py)."""
    response = client.get(path, headers={**UPGRADE_HEADERS, **bearer(token, **headers)})
    assert response.status_code != 101, "upgraded: the test client cannot hold a WebSocket"
    assert "Sec-WebSocket-Accept" not in response.headers
    return response
