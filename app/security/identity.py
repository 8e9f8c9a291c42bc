"""Who is asking: a name, a role and the policy that applies to them.

Tokens are kept only as SHA-256 digests.  A presented token is hashed and
compared in constant time with every known digest (all of them, so the time
taken does not tell which one matched).  ``TOKEN``, when set, is the simple
default: an admin named ``default``; ``[[tokens]]`` entries add more.

Single sign-on adds two ways (docs/security.md): a presented token that is no
static token may be a JWT (``[jwt]``, app/security/jwt_auth.py), and a request
with no token may carry the identity an auth proxy vouches for
(``[auth_proxy]``, app/security/proxy_auth.py).  Their identities get the
policy of their role.  :meth:`Identities.identify` is the one way in, for
``/ws``, ``/api/*`` and program endpoints alike.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request

from app.security.jwt_auth import Claimed, JwtVerifier, Unauthenticated, looks_like_jwt
from app.security.policy import ADMIN, USER, Policy
from app.security.proxy_auth import ProxyIdentities
from app.security.shares import Grant
from config.settings import DEFAULT_TOKEN_NAME, TOKEN_NAME, Settings

WRONG_TOKEN = "missing or wrong token"

SHARE = "share"  # the role of a share link's holder


@dataclass(frozen=True, eq=False)
class Identity:
    name: str
    role: str
    policy: Policy
    share: Grant | None = None  # a share link's holder: one process of another identity (app/protocol/access.py)

    @classmethod
    def of_share(cls, grant: Grant) -> Identity:
        """The holder of a share link: named by the share, with a user's policy it never starts anything under."""
        return cls(f"share:{grant.id}", SHARE, Policy.build(USER), grant)

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    def may_see(self, owner: str) -> bool:
        """Admins see every token's processes; others only their own; a share's holder its owner's
        (the methods it may call then keep it to the one process, app/protocol/access.py)."""
        if self.share is not None:
            return owner == self.share.owner
        return self.is_admin or owner == self.name

    def hello(self) -> dict[str, Any]:
        """As the ``hello`` notification shows it."""
        shown: dict[str, Any] = {"name": self.name, "role": self.role}
        if self.share is not None:
            shown["share"] = self.share.public()
        return shown


@dataclass(frozen=True)
class Unknown:
    """No identity: ``rule`` and ``message`` say why (audited with the 401); ``presented``:
    credentials were offered (a public program's client without any is let in anonymously)."""

    rule: str
    message: str
    presented: bool


def presented_token(presented: Request) -> str | None:
    """``Authorization: Bearer <token>``, else ``?token=`` (browsers cannot set headers)."""
    scheme, _, credentials = presented.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return presented.args.get("token")


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Identities:
    """Every identity the settings know, looked up by token."""

    def __init__(self, known: list[tuple[bytes, Identity]], settings: Settings) -> None:
        self._known = known
        self._token_names = {identity.name for _digest, identity in known}
        self._jwt = JwtVerifier(settings.JWT) if settings.JWT is not None else None
        self._proxy = ProxyIdentities(settings.AUTH_PROXY, settings.PROXY_COUNT) if settings.AUTH_PROXY else None
        self._policies = {role: Policy.build(role, settings.POLICIES.get(role)) for role in (ADMIN, USER)}

    @classmethod
    def from_settings(cls, settings: Settings) -> Identities:
        known: list[tuple[bytes, Identity]] = []
        if settings.TOKEN:
            policy = Policy.build(ADMIN, settings.POLICIES.get(ADMIN))
            known.append((token_digest(settings.TOKEN), Identity(DEFAULT_TOKEN_NAME, ADMIN, policy)))
        for entry in settings.TOKENS:
            policy = Policy.build(entry.role, settings.POLICIES.get(entry.role), entry.policy, entry.name)
            known.append((bytes.fromhex(entry.sha256), Identity(entry.name, entry.role, policy)))
        return cls(known, settings)

    def identify(self, request: Request) -> Identity | Unknown:
        """Who sent ``request``: a presented token (static, else a JWT), else the auth proxy's header."""
        presented = presented_token(request)
        try:
            if presented:
                return self._by_token(presented)
            claimed = self._proxy.identify(request) if self._proxy is not None else None
            return Unknown("token", WRONG_TOKEN, False) if claimed is None else self._claimed(claimed)
        except Unauthenticated as refused:
            return Unknown(refused.rule, refused.message, True)

    def _by_token(self, presented: str) -> Identity | Unknown:
        found = self.lookup(presented)
        if found is not None:
            return found
        if self._jwt is None or not looks_like_jwt(presented):
            return Unknown("token", WRONG_TOKEN, True)
        return self._claimed(self._jwt.verify(presented))

    def _claimed(self, claimed: Claimed) -> Identity:
        """An identity from single sign-on, with its role's policy; its name as a token's would be."""
        if not TOKEN_NAME.fullmatch(claimed.name):
            raise Unauthenticated("name", f"{claimed.name!r} cannot name an identity ({TOKEN_NAME.pattern})")
        if claimed.name in self._token_names:  # whose processes it would see: never decided by the provider
            raise Unauthenticated("name", f"{claimed.name!r} is the name of a static token")
        return Identity(claimed.name, claimed.role, self._policies[claimed.role])

    def lookup(self, presented: str | None) -> Identity | None:
        """The identity whose token this is, or None."""
        if not presented:
            return None
        digest = token_digest(presented)
        found = None
        for known_digest, identity in self._known:
            if hmac.compare_digest(digest, known_digest):
                found = identity
        return found

    def __len__(self) -> int:
        return len(self._known)
