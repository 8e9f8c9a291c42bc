"""Who may connect: a bearer token (or single sign-on), and for browsers an allowed Origin.

Both checks run in ``before_request``, before flask-sock upgrades the
connection, so a refusal is a real HTTP 401 or 403 rather than a socket
that opens and closes.  The :class:`~app.security.identity.Identity` (name,
role, policy) that :meth:`~app.security.identity.Identities.identify` finds
is left on ``g.identity``; refusals are audited.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.wrappers import Request

from app.security import audit
from app.security.identity import Unknown

PUBLIC_PATHS = frozenset({"/healthz"})
# The web console's page and its static files, by endpoint (app/operations/console.py), and the
# JavaScript client it imports (app/operations/js_client.py): GET and HEAD only, so that a browser
# can load the page that asks for the token.
PUBLIC_PAGE_ENDPOINTS = frozenset({"console.page", "console.static", "console.vendor", "js_client.client_file"})
# Trades a one-time code for the token (app/operations/login.py): no token yet,
# but a browser on another site is refused as anywhere else.
TOKENLESS_POST_ENDPOINTS = frozenset({"console_login.redeem"})
# Asked by every console page load, to learn whether an auth proxy signed the browser in
# (app/operations/http_api.py): its 401 for a request without any credentials is not audited.
QUIET_PROBES = frozenset({"http_api.whoami"})
IDENTITIES_KEY = "PROCWIRE_IDENTITIES"  # app.config: the app.security.identity.Identities


def init_app(app: Flask) -> None:
    app.before_request(check_access)


def check_access() -> Response | None:
    if request.path in PUBLIC_PATHS:
        return None
    if request.method in ("GET", "HEAD") and request.endpoint in PUBLIC_PAGE_ENDPOINTS:
        return None
    settings = current_app.config["PROCWIRE"]
    if request.path == "/metrics" and settings.METRICS_OPEN:
        return None
    if request.method == "POST" and request.endpoint in TOKENLESS_POST_ENDPOINTS:
        return refused_origin(settings.ALLOWED_ORIGINS, None)
    identity = current_app.config[IDENTITIES_KEY].identify(request)
    if isinstance(identity, Unknown):
        if identity.presented or request.endpoint not in QUIET_PROBES:
            refused_http(401, identity.rule, identity.message)
        response = jsonify(error=identity.message)
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="procwire"'
        return response
    refusal = refused_origin(settings.ALLOWED_ORIGINS, identity.name)
    if refusal is None:
        g.identity = identity
    return refusal


def refused_origin(allowed: list[str], token: str | None) -> Response | None:
    """A 403 for a browser on another site (audited), or None."""
    origin = request.headers.get("Origin")
    if origin_allowed(origin, request.host, allowed):
        return None
    refused_http(403, "origin", f"origin not allowed: {origin}", token)
    response = jsonify(error=f"origin not allowed: {origin}")
    response.status_code = 403
    return response


def refused_http(
    status: int, rule: str, message: str, token: str | None = None, refused: Request | None = None
) -> None:
    """Audit a refused HTTP request (the path without its query, which may hold a token);
    ``refused`` is Flask's request unless given (a program's, refused before Flask's dispatch)."""
    refused = request if refused is None else refused
    audit.event(
        "refused",
        token=token,
        remote_addr=refused.remote_addr,
        method=refused.method,
        path=refused.path,
        code=status,
        rule=rule,
        message=message,
    )


def origin_allowed(origin: str | None, host: str, allowed: list[str]) -> bool:
    """No Origin (not a browser), the same host, or one listed in ALLOWED_ORIGINS."""
    if origin is None:
        return True
    origin = origin.rstrip("/").lower()
    if "*" in allowed or origin in (entry.rstrip("/").lower() for entry in allowed):
        return True
    return urlsplit(origin).netloc == host.lower()
