"""procwire's Flask app for Flask's test client: built in-process from explicit settings (no
gunicorn, no gevent patching, no environment nor file read), and the requests the HTTP tests send.

The ``app`` and ``client`` fixtures (tests/conftest.py) use :func:`build_app` with
:func:`settings_for`; a module that needs other settings overrides ``app`` with its own.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import create_app
from config import Settings

ADMIN_TOKEN = "test-token"  # TOKEN: the admin named "default", as tests/server.py's Server
# What a browser or websocket-client sends to open /ws (or a program): refusals come before the upgrade.
UPGRADE_HEADERS = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def digest(token: str) -> str:
    """What ``[[tokens]]`` stores of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_entry(name: str, token: str, role: str = "user", policy: dict[str, Any] | None = None) -> dict[str, Any]:
    """One ``TOKENS`` entry for ``token``."""
    entry: dict[str, Any] = {"name": name, "role": role, "sha256": digest(token)}
    if policy is not None:
        entry["policy"] = policy
    return entry


def settings_for(state_dir: Path, **values: Any) -> Settings:
    """An admin token, ``state_dir`` for the state, no audit log; ``values`` replace or add settings
    (validated as the TOML file's would be)."""
    return Settings.model_validate({"TOKEN": ADMIN_TOKEN, "STATE_DIR": str(state_dir), "AUDIT_LOG": ""} | values)


def build_app(settings: Settings) -> Flask:
    """The app as a worker builds it, in testing mode (an error in a view is raised, not a 500)."""
    app = create_app(settings)
    app.config["TESTING"] = True
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
