"""The console's one-time login: ``POST /console/redeem`` trades a code for the token.

``make run`` prints ``http://HOST:PORT/?code=<code>`` (config/startup.py); the
page posts the code here and stores the token it gets, so the token never
sits in the address bar or its history.  A code works once, on any worker
(config/login_codes.py), for ten minutes.  The endpoint needs no token
(app/security/auth.py lets it through, Origin checked); failed attempts
are limited per client address, and audited.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from flask import Blueprint, Response, current_app, jsonify, request

from app.security import audit
from app.security.auth import refused_http
from app.security.ratelimit import TokenBucket
from config.login_codes import CodeStore, Redeemed
from config.settings import DEFAULT_TOKEN_NAME

bp = Blueprint("console_login", __name__)

FAILURES_PER_MINUTE = 10  # per client address, per worker
FAILURE_BURST = 10
TRACKED_ADDRESSES = 1024  # the least recently failing are forgotten beyond this
_failures: OrderedDict[str, TokenBucket] = OrderedDict()

REFUSALS = {
    Redeemed.UNKNOWN: "this login link is not valid (already used, or from an earlier start): paste the token instead",
    Redeemed.EXPIRED: "this login link has expired (after 10 minutes): paste the token instead",
}


@bp.post("/console/redeem")
def redeem() -> tuple[Response, int]:
    address = request.remote_addr or ""
    if _blocked(address):
        return _answer({"error": "too many wrong login codes from this address: wait a minute"}, 429)
    body = request.get_json(silent=True)
    code = body.get("code") if isinstance(body, dict) else None
    if not isinstance(code, str):
        return _answer({"error": 'send {"code": "<the code from the link>"} as JSON'}, 400)
    settings = current_app.config["PROCWIRE"]
    outcome = CodeStore.of(settings.STATE_DIR, settings.BIND).redeem(code)
    if outcome is Redeemed.OK and settings.TOKEN:
        audit.event("login", token=DEFAULT_TOKEN_NAME, remote_addr=address, method="redeem")
        return _answer({"token": settings.TOKEN}, 200)
    _count_failure(address)
    message = REFUSALS.get(outcome, "this server has no token to hand out")
    refused_http(403, "code", message)
    return _answer({"error": message}, 403)


def _blocked(address: str) -> bool:
    """True while the address has used up its failed attempts."""
    bucket = _failures.get(address)
    if bucket is None:
        return False
    bucket.take(time.monotonic(), 0.0)  # refill only
    return bucket.tokens < 1


def _count_failure(address: str) -> None:
    now = time.monotonic()
    bucket = _failures.pop(address, None) or TokenBucket(FAILURES_PER_MINUTE / 60, FAILURE_BURST, now)
    bucket.take(now)
    _failures[address] = bucket  # the most recent last
    while len(_failures) > TRACKED_ADDRESSES:
        _failures.popitem(last=False)


def _answer(body: dict[str, str], status: int) -> tuple[Response, int]:
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response, status
