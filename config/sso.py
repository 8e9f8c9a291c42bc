"""The ``[jwt]`` and ``[auth_proxy]`` tables: single sign-on beside static tokens.

docs/security.md ("Single sign-on") explains both; app/security/jwt_auth.py
and app/security/proxy_auth.py use them.  Only asymmetric JWT algorithms are
accepted: ``none`` would accept unsigned tokens, and an HS* algorithm checked
against a public key lets anyone who has the public key sign.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

Role = Literal["admin", "user"]
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
UNIX_PEER = "unix"  # in trusted_proxies: a peer on gunicorn's UNIX socket


def _algorithm(value: str) -> str:
    if value.lower() == "none":
        raise ValueError("'none' would accept unsigned tokens")
    if value.upper().startswith("HS"):
        raise ValueError(
            f"{value} is a shared-secret algorithm: checked against a public key, anyone holding that key could "
            "sign tokens (use RS*, PS*, ES* or EdDSA)"
        )
    if value not in ASYMMETRIC_ALGORITHMS:
        raise ValueError(f"unknown algorithm {value!r}: one of {', '.join(ASYMMETRIC_ALGORITHMS)}")
    return value


def _jwks_url(value: str) -> str:
    """Empty, an https URL, or plain http to this host only (nothing on the way can swap the keys)."""
    parts = urlsplit(value)
    if value and not (parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS)):
        raise ValueError(f"not an https URL (plain http only on loopback): {value!r}")
    return value


def _public_key(value: str) -> str:
    """Empty, or a PEM public key that loads (a private key is refused: it has no place in a config file)."""
    if value:
        # Imported here: config/ imports only the standard library and pydantic (config/__init__.py).
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            load_pem_public_key(value.encode())
        except (ValueError, TypeError):
            raise ValueError("not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    return value


def _peer(value: str) -> str:
    """An address or a network (``10.0.0.0/8``), or ``unix``."""
    if value != UNIX_PEER:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"not an address, a network or {UNIX_PEER!r}: {value!r}") from None
    return value


def _one_or_more(value: object) -> object:
    return [value] if isinstance(value, str) else value


Algorithm = Annotated[str, AfterValidator(_algorithm)]
ClaimPath = Annotated[str, Field(pattern=r"^[^.\s]+(\.[^.\s]+)*$")]  # a claim, or a dotted path into nested ones
HeaderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9-]+$")]


class RoleMapping(BaseModel):
    """From claim values (groups) to roles: admin if any value maps to admin, else user if any
    maps to user, else ``default_role``; none at all: refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    roles: dict[str, Role] = Field(default_factory=dict)
    default_role: Role | None = None

    @model_validator(mode="after")
    def _some_role(self) -> RoleMapping:
        if not self.roles and self.default_role is None:
            raise ValueError("roles or default_role: without either, no one gets a role")
        return self


class JwtSettings(RoleMapping):
    """``[jwt]``: bearer tokens signed by an identity provider (OIDC access or ID tokens)."""

    jwks_url: Annotated[str, AfterValidator(_jwks_url)] = ""
    public_key: Annotated[str, AfterValidator(_public_key)] = ""
    issuer: str = Field(min_length=1)
    audience: Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_one_or_more)] = Field(min_length=1)
    algorithms: list[Algorithm] = Field(default_factory=lambda: ["RS256"], min_length=1)
    name_claim: ClaimPath = "sub"
    role_claim: ClaimPath = "groups"
    leeway: float = Field(30.0, ge=0, le=300)  # seconds of clock skew allowed on exp, nbf and iat
    jwks_cache_seconds: float = Field(300.0, ge=0, le=86400)
    jwks_refresh_seconds: float = Field(10.0, ge=0, le=3600)  # at most one fetch this often for unknown kids
    jwks_timeout: float = Field(5.0, gt=0, le=30)

    @model_validator(mode="after")
    def _one_key_source(self) -> JwtSettings:
        if bool(self.jwks_url) == bool(self.public_key):
            raise ValueError("JWT: set exactly one of jwks_url and public_key")
        return self


class AuthProxySettings(RoleMapping):
    """``[auth_proxy]``: the identity an authenticating proxy in front (nginx ``auth_request``) vouches for."""

    user_header: HeaderName = "X-Forwarded-User"
    groups_header: HeaderName = "X-Forwarded-Groups"
    trusted_proxies: list[Annotated[str, AfterValidator(_peer)]] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"], min_length=1
    )
    secret_header: HeaderName = "X-Procwire-Proxy-Secret"
    secret_sha256: str = Field(pattern="^[0-9a-fA-F]{64}$")
