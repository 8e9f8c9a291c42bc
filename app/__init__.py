"""procwire: run and control processes over a WebSocket."""

from __future__ import annotations

import logging
import secrets

from flask import Flask
from pythonjsonlogger.json import JsonFormatter
from werkzeug.middleware.proxy_fix import ProxyFix

from app.cluster.node import node_name
from app.registry import registry_of
from app.registry.base import Registry
from app.registry.local import LocalRegistry
from config import Settings, load_settings

log = logging.getLogger("procwire")
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


def create_worker_app() -> Flask:
    """The app of a gevent worker (wsgi.py): settings from config/ (the TOML file and
    ``PROCWIRE_*``), logging on stderr, then the registry's background work started (the
    cluster's greenlets when ``REDIS_URL`` is set).  Pings and reaping start with the first
    connection and the first process."""
    settings = load_settings()
    _configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)
    app = create_app(settings)
    registry_of(app).start()
    return app


def create_app(settings: Settings) -> Flask:
    """Build the Flask app from ``settings``, and nothing else: it reads no environment
    variable nor file, configures no logging and starts no greenlet or thread, so that
    Flask's test client can drive it in plain pytest (no gevent patching), in-process::

        settings = Settings(TOKEN="admin-token", STATE_DIR=str(tmp_path), AUDIT_LOG="")
        app = create_app(settings)
        app.config["TESTING"] = True
        response = app.test_client().get("/api/whoami", headers={"Authorization": "Bearer admin-token"})

    Every route is there, ``/ws`` included: its refusals (401, 403, 400 for a plain GET)
    come before any upgrade, but an accepted upgrade needs a real worker's socket.  Give
    ``STATE_DIR`` (share links' secret, login codes) and ``AUDIT_LOG`` (``-`` is stderr; the
    audit logger is the process's, so the last app built decides), or ``Settings`` reads
    ``XDG_STATE_HOME`` for the former.  With ``REDIS_URL`` the cluster registry is built but
    not started: that needs real workers (:func:`create_worker_app`, tests/cluster.py).
    tests/flask_app.py builds these for the suite (docs/testing.md)."""
    from app import programs
    from app.edge import endpoint
    from app.operations import console, http_api, js_client, login, static_dir
    from app.recording import http as recordings_http
    from app.registry import EXTENSION
    from app.security import audit, auth
    from app.security.identity import Identities

    if not settings.TOKEN and not settings.TOKENS:
        settings = settings.model_copy(update={"TOKEN": secrets.token_urlsafe(32)})
        log.warning("no TOKEN configured; this process uses: %s", settings.TOKEN)
    app = Flask(__name__)
    app.config["PROCWIRE"] = settings
    app.config[auth.IDENTITIES_KEY] = Identities.from_settings(settings)
    app.extensions[EXTENSION] = registry = _make_registry(settings)
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
    """In memory, or shared by every node of the cluster when REDIS_URL is set (not started yet)."""
    node = node_name(settings.BIND)
    if not settings.REDIS_URL:
        return LocalRegistry(node)
    from app.cluster.registry import ClusterRegistry

    return ClusterRegistry(settings, node)


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
