"""Signing keys the tests make, their JWKs, and JWTs signed with them (tests/unit and tests/test_sso.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://idp.test"
AUDIENCE = "procwire"


@dataclass
class SigningKey:
    """A private key, its ``kid`` and algorithm."""

    kid: str
    algorithm: str = "RS256"
    private: Any = field(default=None)

    def __post_init__(self) -> None:
        if self.private is None:
            if self.algorithm.startswith("ES"):
                self.private = ec.generate_private_key(ec.SECP256R1())
            else:
                self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def jwk(self) -> dict[str, Any]:
        """The public half as a JWK, as an identity provider publishes it."""
        kind = ECAlgorithm if self.algorithm.startswith("ES") else RSAAlgorithm
        found = json.loads(kind.to_jwk(self.private.public_key()))
        return {**found, "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def sign(self, claims: dict[str, Any] | None = None, *, header: dict[str, Any] | None = None, **more: Any) -> str:
        """A JWT over the usual claims (valid for five minutes), updated with ``claims``/``more``,
        its header with ``header`` (a value None drops that claim or header field)."""
        body = _present(usual_claims(**(claims or {}), **more))
        fields = _present({"kid": self.kid, **(header or {})})
        return jwt.encode(body, self.private, algorithm=self.algorithm, headers=fields)


def _present(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [key.jwk() for key in keys]}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any], kid: str) -> str:
    """``alg: none``: no signature at all."""
    head = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    return f"{head}.{_b64(json.dumps(claims).encode())}."


def hmac_with_public_key(claims: dict[str, Any], key: SigningKey) -> str:
    """HS256 keyed with the public key's PEM: the classic algorithm confusion (PyJWT refuses to make it)."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    signed = f"{head}.{_b64(json.dumps(claims).encode())}"
    mac = hmac.new(key.public_pem.encode(), signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{_b64(mac)}"


def usual_claims(**more: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "groups": ["devs"], "iat": now, "exp": now + 300, **more}
