"""The JavaScript client, served to anyone at ``/client/procwire.js`` with its types beside it.

The files live in ``clients/js/`` of the repository: a browser page or a Node program takes
exactly the module procwire's web console imports, from the server it talks to.  They hold no
secret, so they are served without a token (app.security.auth lets this blueprint's endpoint
through, GET and HEAD only), as the console's own files are.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, send_file

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "js"

# The only files served, by name, with their media types.
FILES = {
    "procwire.js": "text/javascript",
    "procwire.d.ts": "text/plain",
}

bp = Blueprint("js_client", __name__)


@bp.get("/client/<name>")
def client_file(name: str) -> Response:
    mimetype = FILES.get(name)
    if mimetype is None:
        abort(404)
    response = send_file(CLIENT_DIR / name, mimetype=mimetype, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    # A page of another origin may import it too (a module script is fetched with CORS).
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response
