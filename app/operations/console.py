"""The web console: one page at ``/`` that speaks the protocol from the browser.

The page, its own script and style (``app/operations/console/``) and the files
of xterm.js and asciinema-player (the Recordings view) from ``node_modules``
(installed by ``make install``, never copied into the repository) are served
without a token: they hold no secret, and a browser needs the page before it
can ask for the token.  Everything the
page does goes through ``/ws``, which checks the token and the Origin like
any other client.  Every URL in the page is relative, so it works behind a
path prefix (served at ``/prefix/``, with its slash).
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, send_file, send_from_directory

ASSETS = Path(__file__).resolve().parent / "console"
NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"

# The only files of node_modules that are served, by the name the page uses.
# (app.auth lets the endpoints of this blueprint through without a token.)
VENDOR_FILES = {
    "xterm.js": "@xterm/xterm/lib/xterm.js",
    "xterm.css": "@xterm/xterm/css/xterm.css",
    "addon-fit.js": "@xterm/addon-fit/lib/addon-fit.js",
    "asciinema-player.js": "asciinema-player/dist/bundle/asciinema-player.min.js",
    "asciinema-player.css": "asciinema-player/dist/bundle/asciinema-player.css",
}

PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        # wasm-unsafe-eval: asciinema-player's terminal is WebAssembly (no eval of JavaScript).
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

bp = Blueprint("console", __name__, static_folder=ASSETS, static_url_path="/console")


@bp.get("/")
def page() -> Response:
    response = send_from_directory(ASSETS, "index.html", max_age=0)
    response.headers.update(PAGE_HEADERS)
    return response


@bp.get("/vendor/<name>")
def vendor(name: str) -> Response:
    relative = VENDOR_FILES.get(name)
    if relative is None:
        abort(404)
    path = NODE_MODULES / relative
    if not path.is_file():
        message = f"{name} is not installed: run `npm ci` in the server's directory (`make install` does)\n"
        return Response(message, status=503, mimetype="text/plain")
    response = send_file(path, max_age=3600)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
