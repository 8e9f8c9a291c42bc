"""Plain HTTP next to the WebSocket: health, and the registry for operators.

``/api/*`` is for admins only: a valid token of role ``user`` gets 403, but for
``/api/whoami``, which tells any identity who the server takes it for (the
console asks it to find out whether an auth proxy in front signed it in).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify, request

from app import metrics
from app.errors import RpcError
from app.registry import registry_of
from app.security import audit
from app.security.auth import refused_http

bp = Blueprint("http_api", __name__)

CLOSE_BY_ADMIN = 4000
FOR_EVERYONE = frozenset({"/api/whoami"})


@bp.before_request
def admins_only() -> tuple[Response, int] | None:
    identity = g.get("identity")
    if request.path in FOR_EVERYONE:
        return None
    if request.path.startswith("/api/") and (identity is None or not identity.is_admin):
        refused_http(403, "admin", "the HTTP API is for admins only", getattr(identity, "name", None))
        return jsonify(error="the HTTP API is for admins only"), 403
    return None


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


@bp.get("/api/whoami")
def whoami() -> Response:
    response = jsonify(name=g.identity.name, role=g.identity.role)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/api/clients")
def clients() -> Response:
    return jsonify(clients=registry_of(current_app).clients_info())


@bp.get("/api/processes")
def processes() -> Response:
    return jsonify(processes=registry_of(current_app).all_processes())


@bp.delete("/api/clients/<client_id>")
def disconnect(client_id: str) -> tuple[Response, int]:
    try:
        closed = registry_of(current_app).close_client(client_id, CLOSE_BY_ADMIN, "disconnected by an operator")
    except RpcError as error:  # the connection is on another node, which cannot be reached now
        return jsonify(error=error.message), 503
    if closed is None:
        return jsonify(error=f"no such client: {client_id}"), 404
    audit.event("disconnect_client", token=g.identity.name, client=client_id, owner=closed["owner"])
    return jsonify(closed=client_id), 200
