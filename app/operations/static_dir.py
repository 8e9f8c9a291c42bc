"""``STATIC_DIR`` (websocketd's ``--staticdir``): a directory's files at ``/`` and ``/FILE``.

A WSGI middleware in front of Flask's dispatch.  A plain GET or HEAD (not a
WebSocket upgrade) whose path no route of procwire's takes (``/ws``,
``/api/...``, ``/console/...``, ``/vendor/...``, ``/client/...``,
``/metrics``, ``/healthz``; ``/programs/...`` is taken before this) is
answered from the directory when it holds that file, without a token, as
websocketd serves it; ``/`` and ``/DIR/`` are their ``index.html``.  The
console's page at ``/`` gives way to the directory's ``index.html``; without
one, ``/`` stays the console.  Paths are joined by werkzeug's ``safe_join``
(no ``..``, no absolute path); dot-files are never served.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.routing import MapAdapter
from werkzeug.security import safe_join
from werkzeug.utils import send_from_directory

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
GIVES_WAY = frozenset({"console.page"})  # procwire's routes that a file of STATIC_DIR takes over
INDEX = "index.html"


class StaticDir:
    """Files of one directory for the requests no route of the app's takes."""

    def __init__(self, app: Flask, wsgi_app: WsgiApp, directory: str) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.directory = directory

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        name = self._file(environ)
        if name is None:
            return self.wsgi_app(environ, start_response)
        response = send_from_directory(self.directory, name, environ, max_age=0)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response(environ, start_response)

    def _file(self, environ: dict[str, Any]) -> str | None:
        """The file of the directory this request asks for, relative to it; None to pass it on."""
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD") or environ.get("HTTP_UPGRADE"):
            return None
        path = environ.get("PATH_INFO", "/")
        name = path.lstrip("/") + (INDEX if path.endswith("/") else "")
        if any(part.startswith(".") for part in name.split("/")) or self._routed(environ):
            return None
        found = safe_join(self.directory, name)
        return name if found is not None and os.path.isfile(found) else None

    def _routed(self, environ: dict[str, Any]) -> bool:
        """Does a route of procwire's (other than the console's page) take this path?"""
        adapter: MapAdapter = self.app.url_map.bind_to_environ(environ)
        try:
            endpoint, _ = adapter.match()
        except HTTPException as answer:  # 404 or 405: no route; a redirect: a route's own URL
            return answer.code not in (404, 405)
        return endpoint not in GIVES_WAY


def init_app(app: Flask) -> None:
    """Serve ``STATIC_DIR`` in front of Flask's dispatch; nothing when it is not set."""
    directory = app.config["PROCWIRE"].STATIC_DIR
    if directory:
        app.wsgi_app = StaticDir(app, app.wsgi_app, directory)  # type: ignore[method-assign]
