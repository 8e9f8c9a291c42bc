"""Who may connect: a bearer token, and for browsers an allowed Origin.

Both checks run in ``before_request``, before flask-sock upgrades the
connection, so a refusal is a real HTTP 401 or 403 rather than a socket
that opens and closes.  The token's :class:`~app.identity.Identity` (name,
role, policy) is left on ``g.identity``; refusals are audited.  A share
link (``?share=`` or a bearer token shaped like one, app/security/shares.py)
opens ``/ws`` only, as the restricted identity of its share.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.wrappers import Request

from app.errors import ErrorCode, RpcError
from app.registry import registry_of
from app.security import audit
from app.security.identity import Identity
from app.security.shares import Refused, Shares, looks_like_share

PUBLIC_PATHS = frozenset({"/healthz"})
# The web console's page and its static files, by endpoint (app/operations/console.py), and the
# JavaScript client it imports (app/operations/js_client.py): GET and HEAD only, so that a browser
# can load the page that asks for the token.
PUBLIC_PAGE_ENDPOINTS = frozenset({"console.page", "console.static", "console.vendor", "js_client.client_file"})
# Trades a one-time code for the token (app/operations/login.py): no token yet,
# but a browser on another site is refused as anywhere else.
TOKENLESS_POST_ENDPOINTS = frozenset({"console_login.redeem"})
IDENTITIES_KEY = "PROCWIRE_IDENTITIES"  # app.config: the app.identity.Identities
SHARES_KEY = "procwire.shares"  # app.extensions: the app.security.shares.Shares of this worker


def init_app(app: Flask) -> None:
    app.extensions[SHARES_KEY] = Shares.from_settings(app.config["PROCWIRE"])
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
    token = presented_token()
    shared = request.args.get("share")
    identity = current_app.config[IDENTITIES_KEY].lookup(token) if shared is None else None
    if identity is None and (shared is not None or (token is not None and looks_like_share(token))):
        return _share_access(shared or token or "", settings.ALLOWED_ORIGINS)
    if identity is None:
        return unauthorized("token", "missing or wrong token")
    return _admitted(identity, settings.ALLOWED_ORIGINS)


def _admitted(identity: Identity, allowed_origins: list[str]) -> Response | None:
    refusal = refused_origin(allowed_origins, identity.name)
    if refusal is None:
        g.identity = identity
    return refusal


def _share_access(token: str, allowed_origins: list[str]) -> Response | None:
    """A share link opens ``/ws`` only, while valid; a single-use one is spent by its first upgrade."""
    shares: Shares = current_app.extensions[SHARES_KEY]
    if request.path != "/ws":
        return unauthorized("share", "a share link opens /ws only")
    try:
        grant = shares.check(token)
    except Refused as invalid:
        return unauthorized("share", str(invalid))
    identity = Identity.of_share(grant)
    gone = _process_gone(identity, grant.proc)
    if gone is not None:
        return unauthorized("share", f"share link {grant.id}: {gone}", identity.name)
    refusal = refused_origin(allowed_origins, identity.name)
    if refusal is not None:
        return refusal
    try:
        shares.spend(grant)
    except Refused as spent:
        return unauthorized("share", str(spent), identity.name)
    g.identity = identity
    return None


def _process_gone(identity: Identity, proc: int) -> str | None:
    """Why the shared process cannot be reached, if it cannot: released or forgotten, or Redis
    unreachable.  Several workers without Redis cannot tell (it may live in another): None."""
    settings = current_app.config["PROCWIRE"]
    if settings.WORKERS > 1 and not settings.REDIS_URL:
        return None
    try:
        registry_of(current_app).lookup(identity, proc)
    except RpcError as error:
        if error.code == ErrorCode.NO_SUCH_PROCESS:
            return f"process {proc} no longer exists"
        return error.message
    return None


def unauthorized(rule: str, message: str, token: str | None = None) -> Response:
    """A 401 (audited) asking for a bearer token."""
    refused_http(401, rule, message, token)
    response = jsonify(error=message)
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="procwire"'
    return response


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


def presented_token(presented: Request | None = None) -> str | None:
    """``Authorization: Bearer <token>``, else ``?token=`` (browsers cannot set headers);
    of Flask's request unless another is given."""
    presented = request if presented is None else presented
    scheme, _, credentials = presented.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return presented.args.get("token")


def origin_allowed(origin: str | None, host: str, allowed: list[str]) -> bool:
    """No Origin (not a browser), the same host, or one listed in ALLOWED_ORIGINS."""
    if origin is None:
        return True
    origin = origin.rstrip("/").lower()
    if "*" in allowed or origin in (entry.rstrip("/").lower() for entry in allowed):
        return True
    return urlsplit(origin).netloc == host.lower()
