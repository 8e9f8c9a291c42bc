"""JWT bearer tokens (OIDC access or ID tokens), verified with PyJWT (``[jwt]``, config/sso.py).

The signature is checked with a configured public key or with the key of the
token's ``kid`` in the identity provider's JWKS, then the issuer, the
audience, ``exp`` (required), ``nbf`` and ``iat``.  The token's ``alg`` must
be one of the configured ``algorithms`` (never ``none`` nor HS*: the settings
refuse them) and fit the key.  The name and the role come from configured
claims, the role through the ``roles`` mapping (config/sso.py RoleMapping).

The JWKS is fetched when first needed, again once it is older than
``jwks_cache_seconds``, and when a token names a ``kid`` it does not hold
(keys rotate), but never more often than every ``jwks_refresh_seconds``:
tokens with made-up kids cannot make the server hammer the provider.  A
fetch is plain ``urllib`` (cooperative under gevent's patching) bounded by
``jwks_timeout``; a failed one keeps the keys already known.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
import orjson
from jwt.algorithms import get_default_algorithms

from config.sso import JwtSettings, RoleMapping

log = logging.getLogger("procwire.jwt")
MAX_JWKS_BYTES = 1024 * 1024
REQUIRED_CLAIMS = ["exp", "iss", "aud"]


class Unauthenticated(Exception):
    """Credentials that prove nothing; ``rule`` and ``message`` go to the audit log and the 401."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


@dataclass(frozen=True)
class Claimed:
    """Who a verified credential says its holder is."""

    name: str
    role: str


def role_of(mapping: RoleMapping, values: Iterable[str]) -> str | None:
    """admin if any value maps to admin, else user if any maps to user, else the default role."""
    roles = {mapping.roles.get(value) for value in values}
    for role in ("admin", "user"):
        if role in roles:
            return role
    return mapping.default_role


def looks_like_jwt(token: str) -> bool:
    """Three base64url parts: worth verifying as a JWT (a static token never has dots)."""
    return token.count(".") == 2


class KeySource(Protocol):
    def key_for(self, kid: str | None, algorithm: str) -> Any: ...


class StaticKey:
    """The configured ``public_key``, prepared once per algorithm (PyJWT checks that it fits)."""

    def __init__(self, pem: str) -> None:
        self._pem = pem
        self._prepared: dict[str, Any] = {}

    def key_for(self, kid: str | None, algorithm: str) -> Any:
        if algorithm not in self._prepared:
            try:
                self._prepared[algorithm] = get_default_algorithms()[algorithm].prepare_key(self._pem)
            except jwt.PyJWTError as error:
                raise Unauthenticated("jwt", f"JWT: the public key cannot verify {algorithm}: {error}") from None
        return self._prepared[algorithm]


def fetch_json(url: str, timeout: float) -> Any:
    """GET a JSON document of at most MAX_JWKS_BYTES."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # https, or http on loopback (config/sso.py)
        body = response.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError(f"more than {MAX_JWKS_BYTES} bytes")
    return orjson.loads(body)


class Jwks:
    """The provider's signing keys by ``kid``, fetched as the module docstring says."""

    def __init__(
        self,
        settings: JwtSettings,
        fetch: Callable[[str, float], Any] = fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str | None, Mapping[str, Any]] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._prepared: dict[tuple[str | None, str], jwt.PyJWK] = {}
        self._lock = threading.Lock()  # gevent's under patching: one fetch at a time

    def key_for(self, kid: str | None, algorithm: str) -> jwt.PyJWK:
        jwk = self._current(kid)
        if jwk is None:
            raise Unauthenticated("jwt", f"JWT: no key {kid!r} in the JWKS at {self._settings.jwks_url}")
        declared = jwk.get("alg")
        if declared is not None and declared != algorithm:
            raise Unauthenticated("jwt", f"JWT: key {kid!r} is for {declared}, the token says {algorithm}")
        cache_key = (kid, algorithm)
        if cache_key not in self._prepared:
            try:
                self._prepared[cache_key] = jwt.PyJWK(dict(jwk), algorithm)
            except jwt.PyJWTError as error:
                raise Unauthenticated("jwt", f"JWT: key {kid!r} cannot verify {algorithm}: {error}") from None
        return self._prepared[cache_key]

    def _current(self, kid: str | None) -> Mapping[str, Any] | None:
        jwk = self._find(kid)
        if self._fetch_due(jwk is None):
            with self._lock:
                if self._fetch_due(self._find(kid) is None):  # not done meanwhile by another greenlet
                    self._refresh()
            jwk = self._find(kid)
        return jwk

    def _find(self, kid: str | None) -> Mapping[str, Any] | None:
        """The key named ``kid``; a token without one may use the set's only key."""
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    def _fetch_due(self, unknown: bool) -> bool:
        now = self._clock()
        if self._attempted_at is None:
            return True
        stale = self._fetched_at is None or now - self._fetched_at >= self._settings.jwks_cache_seconds
        return (stale or unknown) and now - self._attempted_at >= self._settings.jwks_refresh_seconds

    def _refresh(self) -> None:
        url = self._settings.jwks_url
        self._attempted_at = self._clock()
        try:
            document = self._fetch(url, self._settings.jwks_timeout)
            keys = jwks_keys(document)
        except (OSError, ValueError, http.client.HTTPException) as error:
            log.warning("cannot fetch the JWKS at %s: %s (keeping %d known keys)", url, error, len(self._keys))
            return
        self._keys = keys
        self._prepared = {}
        self._fetched_at = self._attempted_at
        log.info("fetched %d signing keys from %s", len(keys), url)


def jwks_keys(document: Any) -> dict[str | None, Mapping[str, Any]]:
    """A JWKS's asymmetric signing keys by ``kid`` (shared-secret ``oct`` keys and keys for
    encryption are left out)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('not a JWKS: no "keys" list')
    keys = [
        key
        for key in document["keys"]
        if isinstance(key, dict) and key.get("kty") in ("RSA", "EC", "OKP") and key.get("use", "sig") == "sig"
    ]
    if not keys:
        raise ValueError("no RSA, EC or OKP key in the JWKS")
    return {key.get("kid"): key for key in keys}


class JwtVerifier:
    """Checks one presented JWT and says who it names."""

    def __init__(self, settings: JwtSettings, keys: KeySource | None = None) -> None:
        self.settings = settings
        if keys is None:
            keys = Jwks(settings) if settings.jwks_url else StaticKey(settings.public_key)
        self.keys = keys

    def verify(self, token: str) -> Claimed:
        settings = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise Unauthenticated("jwt", f"JWT: unreadable: {error}") from None
        algorithm = header.get("alg")
        if algorithm not in settings.algorithms:
            raise Unauthenticated("jwt", f"JWT: algorithm {algorithm!r} is not one of {settings.algorithms}")
        kid = header.get("kid")
        key = self.keys.key_for(kid if isinstance(kid, str) else None, algorithm)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as error:
            raise Unauthenticated("jwt", f"JWT: {error}") from None
        return Claimed(self._name(claims), self._role(claims))

    def _name(self, claims: dict[str, Any]) -> str:
        name = claim(claims, self.settings.name_claim)
        if not isinstance(name, str) or not name:
            raise Unauthenticated("jwt", f"JWT: no {self.settings.name_claim} claim to name the identity")
        return name

    def _role(self, claims: dict[str, Any]) -> str:
        found = claim(claims, self.settings.role_claim)
        values = strings(found)
        role = role_of(self.settings, values)
        if role is None:
            raise Unauthenticated("jwt", f"JWT: no role: {self.settings.role_claim} {values} maps to none")
        return role


def strings(found: Any) -> list[str]:
    """A claim's values: one string, or the strings of a list."""
    if isinstance(found, str):
        return [found]
    return [value for value in found if isinstance(value, str)] if isinstance(found, list) else []


def claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim, or a nested one by dotted path (Keycloak's ``realm_access.roles``); None when absent."""
    found: Any = claims
    for part in path.split("."):
        if not isinstance(found, Mapping):
            return None
        found = found.get(part)
    return found
