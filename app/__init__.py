"""procwire: run and control processes over a WebSocket."""

from __future__ import annotations

import logging
import secrets

from flask import Flask
from pythonjsonlogger.json import JsonFormatter
from werkzeug.middleware.proxy_fix import ProxyFix

from app.cluster.node import node_name
from app.registry.base import Registry
from app.registry.local import LocalRegistry
from config import Settings, load_settings

log = logging.getLogger("procwire")
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app from ``settings`` (loaded from config/ when omitted)."""
    from app import programs
    from app.edge import endpoint
    from app.operations import console, http_api, js_client, login, static_dir
    from app.recording import http as recordings_http
    from app.registry import EXTENSION
    from app.security import audit, auth
    from app.security.identity import Identities

    settings = settings or load_settings()
    if not settings.TOKEN and not settings.TOKENS:
        settings = settings.model_copy(update={"TOKEN": secrets.token_urlsafe(32)})
        log.warning("no TOKEN configured; this process uses: %s", settings.TOKEN)
    _configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)
    app = Flask(__name__)
    app.config["PROCWIRE"] = settings
    app.config[auth.IDENTITIES_KEY] = Identities.from_settings(settings)
    registry = app.extensions[EXTENSION] = _make_registry(settings)
    audit.configure(settings.AUDIT_LOG)
    auth.init_app(app)
    endpoint.init_app(app)
    static_dir.init_app(app)  # inside the program dispatch: an upgrade at / is the program's
    programs.init_app(app, registry)
    if settings.PROXY_COUNT:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.PROXY_COUNT, x_proto=settings.PROXY_COUNT)  # type: ignore[method-assign]
    app.register_blueprint(http_api.bp)
    app.register_blueprint(recordings_http.bp)
    app.register_blueprint(console.bp)
    app.register_blueprint(js_client.bp)
    app.register_blueprint(login.bp)
    return app


def _make_registry(settings: Settings) -> Registry:
    """In memory, or shared by every node of the cluster when REDIS_URL is set."""
    node = node_name(settings.BIND)
    if not settings.REDIS_URL:
        return LocalRegistry(node)
    from app.cluster.registry import ClusterRegistry

    registry = ClusterRegistry(settings, node)
    registry.start()
    return registry


def _configure_logging(level: str, log_format: str) -> None:
    """Text or JSON lines on stderr, unless gunicorn's logconfig_dict did it already."""
    # A log record asks for the current thread's name; under gevent every
    # greenlet then gets a dummy Thread object made for it.  We never log threads.
    logging.logThreads = False
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter(JSON_FIELDS))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
