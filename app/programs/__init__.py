"""Program endpoints: websocketd's one-WebSocket-per-program model (docs/programs.md)."""

from __future__ import annotations

from flask import Flask

from app.programs.catalog import Catalog
from app.programs.dispatch import ProgramDispatch
from app.programs.gate import Gate
from app.registry.base import Registry
from app.security.auth import IDENTITIES_KEY


def init_app(app: Flask, registry: Registry) -> None:
    """Serve the configured programs in front of Flask's dispatch; nothing when there are none."""
    settings = app.config["PROCWIRE"]
    catalog = Catalog(settings)
    if not catalog:
        return
    gate = Gate(settings, app.config[IDENTITIES_KEY], catalog, registry)
    options = app.config["SOCK_SERVER_OPTIONS"]
    app.wsgi_app = ProgramDispatch(app.wsgi_app, gate, settings, registry, options)  # type: ignore[method-assign]
