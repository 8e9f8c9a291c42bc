"""Who may connect: a bearer token (or single sign-on, or a share link), and for browsers an allowed Origin.

Both checks run in ``before_request``, before flask-sock upgrades the
connection, so a refusal is a real HTTP 401 or 403 rather than a socket
that opens and closes.  The :class:`~app.security.identity.Identity` (name,
role, policy) that :meth:`~app.security.identity.Identities.identify` finds
is left on ``g.identity``; refusals are audited.  A share link (``?share=``,
or a bearer token shaped like one: app/security/shares.py) opens ``/ws``
only, as the restricted identity of its share.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.wrappers import Request

from app.errors import RpcError
from app.registry import registry_of
from app.security import audit
from app.security.identity import Identity, Unknown, presented_token
from app.security.shares import Refused, Shares, looks_like_share

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
    shared = request.args.get("share")
    if shared is not None:
        return _share_access(shared, settings.ALLOWED_ORIGINS)
    identity = current_app.config[IDENTITIES_KEY].identify(request)
    if isinstance(identity, Unknown):
        token = presented_token(request)
        if token is not None and looks_like_share(token):
            return _share_access(token, settings.ALLOWED_ORIGINS)
        audited = identity.presented or request.endpoint not in QUIET_PROBES
        return unauthorized(identity.rule, identity.message, audited=audited)
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
    """Why the shared process is gone (released or forgotten), when this worker can tell: alone
    (one worker, no Redis).  Another worker may hold it; a cluster's record of a process just
    started may still be on its way (app/cluster/writer.py): then its attach says."""
    settings = current_app.config["PROCWIRE"]
    if settings.WORKERS > 1 or settings.REDIS_URL:
        return None
    try:
        registry_of(current_app).lookup(identity, proc)
    except RpcError:
        return f"process {proc} no longer exists"
    return None


def unauthorized(rule: str, message: str, token: str | None = None, audited: bool = True) -> Response:
    """A 401 (audited unless told) asking for a bearer token."""
    if audited:
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


def origin_allowed(origin: str | None, host: str, allowed: list[str]) -> bool:
    """No Origin (not a browser), the same host, or one listed in ALLOWED_ORIGINS."""
    if origin is None:
        return True
    origin = origin.rstrip("/").lower()
    if "*" in allowed or origin in (entry.rstrip("/").lower() for entry in allowed):
        return True
    return urlsplit(origin).netloc == host.lower()
