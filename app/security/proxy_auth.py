"""The identity an authenticating proxy in front vouches for (``[auth_proxy]``, config/sso.py).

nginx's ``auth_request`` asks an auth service (oauth2-proxy or similar) about
each request and passes the user it names in ``user_header`` and their groups
in ``groups_header`` (comma-separated).  Anyone can send those headers, so
they count only when the request provably came through that proxy, all of:

- the peer gunicorn sees (before ProxyFix) is in ``trusted_proxies``
  (addresses or networks, ``unix`` for gunicorn's UNIX socket);
- ``X-Forwarded-For`` holds at least ``PROXY_COUNT`` entries (the proxies
  each added theirs);
- ``secret_header`` carries the secret the proxy is configured to send,
  whose SHA-256 is ``secret_sha256`` (compared in constant time).

The secret is what tells nginx from any other program on the same host:
gunicorn listens on loopback, and every process procwire starts runs on that
host and can reach it.  A request with the user header that fails a check is
not authenticated by it (it may still carry a token); docs/security.md has
the threat model.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from werkzeug.wrappers import Request

from app.security.jwt_auth import Claimed, Unauthenticated, role_of
from config.sso import UNIX_PEER, AuthProxySettings

RULE = "auth_proxy"


class ProxyIdentities:
    """Reads ``[auth_proxy]``'s headers from requests that came through the trusted proxies."""

    def __init__(self, settings: AuthProxySettings, proxy_count: int) -> None:
        self.settings = settings
        self.proxy_count = proxy_count
        peers = settings.trusted_proxies
        self._networks = [ipaddress.ip_network(peer, strict=False) for peer in peers if peer != UNIX_PEER]
        self._unix = UNIX_PEER in settings.trusted_proxies
        self._secret_digest = bytes.fromhex(settings.secret_sha256)

    def identify(self, request: Request) -> Claimed | None:
        """Who the proxy says this is; None without the user header; Unauthenticated when the
        header cannot be trusted or names no one procwire knows a role for."""
        user = request.headers.get(self.settings.user_header, "").strip()
        if not user:
            return None
        distrust = self.untrusted_because(request)
        if distrust is not None:
            raise Unauthenticated(RULE, f"{self.settings.user_header} ignored: {distrust}")
        groups = [group.strip() for group in request.headers.get(self.settings.groups_header, "").split(",")]
        role = role_of(self.settings, [group for group in groups if group])
        if role is None:
            message = f"{self.settings.user_header} {user!r}: no role ({self.settings.groups_header} maps to none)"
            raise Unauthenticated(RULE, message)
        return Claimed(user, role)

    def untrusted_because(self, request: Request) -> str | None:
        """Why this request did not come through the trusted proxies, or None when it did."""
        peer = peer_address(request)
        if not self._trusted_peer(peer):
            return f"the peer {peer or UNIX_PEER} is not in trusted_proxies"
        forwarded = [hop for hop in request.headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
        if len(forwarded) < self.proxy_count:
            return f"X-Forwarded-For has {len(forwarded)} entries, PROXY_COUNT is {self.proxy_count}"
        secret = request.headers.get(self.settings.secret_header)
        digest = hashlib.sha256((secret or "").encode("utf-8", "surrogatepass")).digest()
        if not hmac.compare_digest(digest, self._secret_digest):
            return f"{self.settings.secret_header} is {'wrong' if secret else 'missing'}"
        return None

    def _trusted_peer(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return self._unix  # gunicorn on a UNIX socket gives no address
        return any(address in network for network in self._networks)


def peer_address(request: Request) -> str:
    """The address gunicorn accepted the connection from: ProxyFix keeps it aside when it
    replaces REMOTE_ADDR with the client's."""
    original = request.environ.get("werkzeug.proxy_fix.orig", {})
    return str(original.get("REMOTE_ADDR", request.environ.get("REMOTE_ADDR")) or "")
