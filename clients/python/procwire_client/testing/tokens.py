"""User tokens for a test server: made at random, declared to the server by their SHA-256 only.

A server reads its ``[[tokens]]`` when it starts (``PROCWIRE_TOKENS``, docs/security.md), so the
users of a test server are known before it starts; each gets a fresh token per server.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from typing import Any

TOKEN_BYTES = 32  # as procwire-token's


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def user_entry(name: str, token: str, policy: Mapping[str, Any] | None) -> dict[str, Any]:
    """A ``[[tokens]]`` table of role ``user``; without a ``policy``, ``[policies.user]`` applies."""
    entry: dict[str, Any] = {"name": name, "role": "user", "sha256": hashlib.sha256(token.encode()).hexdigest()}
    if policy is not None:
        entry["policy"] = dict(policy)
    return entry


def tokens_setting(given: str | None, entries: list[dict[str, Any]]) -> str:
    """``PROCWIRE_TOKENS``: the tables already given in it (a JSON list), then ``entries``."""
    return json.dumps([*(json.loads(given) if given else []), *entries])
