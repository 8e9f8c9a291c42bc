"""Who holds a token: a name, a role and the policy that applies to them.

Tokens are kept only as SHA-256 digests.  A presented token is hashed and
compared in constant time with every known digest (all of them, so the time
taken does not tell which one matched).  ``TOKEN``, when set, is the simple
default: an admin named ``default``; ``[[tokens]]`` entries add more.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from app.security.policy import ADMIN, USER, Policy
from app.security.shares import Grant
from config.settings import DEFAULT_TOKEN_NAME, Settings

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


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Identities:
    """Every identity the settings know, looked up by token."""

    def __init__(self, known: list[tuple[bytes, Identity]]) -> None:
        self._known = known

    @classmethod
    def from_settings(cls, settings: Settings) -> Identities:
        known: list[tuple[bytes, Identity]] = []
        if settings.TOKEN:
            policy = Policy.build(ADMIN, settings.POLICIES.get(ADMIN))
            known.append((token_digest(settings.TOKEN), Identity(DEFAULT_TOKEN_NAME, ADMIN, policy)))
        for entry in settings.TOKENS:
            policy = Policy.build(entry.role, settings.POLICIES.get(entry.role), entry.policy, entry.name)
            known.append((bytes.fromhex(entry.sha256), Identity(entry.name, entry.role, policy)))
        return cls(known)

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
