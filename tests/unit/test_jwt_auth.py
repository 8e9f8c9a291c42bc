"""app.security.jwt_auth and the [jwt] table, without a server: keys the test makes, PyJWT for real.

The JWKS is handed over by a function instead of HTTP (tests/test_sso.py fetches it from a real
endpoint), and time by a clock the test moves, so refresh rules are checked without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from app.security.jwt_auth import Claimed, Jwks, JwtVerifier, Unauthenticated, claim
from config.settings import ConfigError, Settings, load_settings
from config.sso import JwtSettings
from tests.jwt_keys import AUDIENCE, ISSUER, SigningKey, hmac_with_public_key, jwks, unsigned, usual_claims

RSA = SigningKey("k1")
OTHER = SigningKey("k1")  # same kid, another key: a forgery
EC = SigningKey("e1", "ES256")


def jwt_settings(**values: Any) -> JwtSettings:
    base: dict[str, Any] = {
        "public_key": RSA.public_pem,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "roles": {"admins": "admin", "devs": "user"},
    }
    return JwtSettings.model_validate({**base, **values})


def refusal(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as raised:
        verifier.verify(token)
    assert raised.value.rule == "jwt"
    return raised.value.message


# -- settings ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"algorithms": ["none"]}, "'none' would accept unsigned tokens"),
        ({"algorithms": ["RS256", "HS256"]}, "HS256 is a shared-secret algorithm"),
        ({"algorithms": ["XS1"]}, "unknown algorithm"),
        ({"algorithms": []}, "at least 1"),
        ({"jwks_url": "https://idp.test/jwks"}, "exactly one of jwks_url and public_key"),
        ({"public_key": "", "jwks_url": "http://idp.test/jwks"}, "plain http only on loopback"),
        ({"public_key": "", "jwks_url": ""}, "exactly one of jwks_url and public_key"),
        ({"public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}, "not a PEM public key"),
        ({"roles": {}}, "roles or default_role"),
        ({"roles": {"x": "root"}}, "'admin' or 'user'"),
        ({"audience": []}, "at least 1"),
        ({"issuer": ""}, "at least 1"),
    ],
)
def test_the_table_refuses(change: dict[str, Any], says: str) -> None:
    values = {"JWT": {**jwt_settings().model_dump(), **change}}
    with pytest.raises(ValueError, match=says):
        Settings.model_validate(values)


def test_read_from_the_toml_file(tmp_path: Any) -> None:
    path = tmp_path / "procwire.toml"
    path.write_text(
        '[jwt]\njwks_url = "http://127.0.0.1:8080/jwks"\nissuer = "https://idp.test"\naudience = "procwire"\n'
        'algorithms = ["RS256", "ES256"]\nname_claim = "preferred_username"\nrole_claim = "realm_access.roles"\n'
        '[jwt.roles]\nops = "admin"\n'
    )
    settings = load_settings({"PROCWIRE_CONFIG": str(path)})
    assert settings.JWT is not None
    assert settings.JWT.audience == ["procwire"] and settings.JWT.roles == {"ops": "admin"}
    assert settings.JWT.jwks_cache_seconds == 300 and settings.JWT.jwks_refresh_seconds == 10
    key = f'public_key = """{RSA.public_pem}"""'
    path.write_text(f'[jwt]\n{key}\nissuer = "i"\naudience = "a"\nalgorithms = ["HS512"]\n')
    with pytest.raises(ConfigError, match=r"JWT\.algorithms\.0: .*HS512 is a shared-secret algorithm"):
        load_settings({"PROCWIRE_CONFIG": str(path)})


# -- verification -------------------------------------------------------------------------------------------


def test_a_valid_token_names_its_holder_and_role() -> None:
    verifier = JwtVerifier(jwt_settings())
    assert verifier.verify(RSA.sign()) == Claimed("alice", "user")
    assert verifier.verify(RSA.sign(groups=["devs", "admins"])) == Claimed("alice", "admin")  # admin wins
    assert verifier.verify(RSA.sign(groups="admins", sub="bob")) == Claimed("bob", "admin")  # one string
    assert verifier.verify(RSA.sign(aud=["other", AUDIENCE])) == Claimed("alice", "user")


def test_claims_by_configured_names_and_paths() -> None:
    verifier = JwtVerifier(
        jwt_settings(name_claim="preferred_username", role_claim="realm_access.roles", default_role="user", roles={})
    )
    token = RSA.sign(preferred_username="carol", realm_access={"roles": ["x"]})
    assert verifier.verify(token) == Claimed("carol", "user")  # no mapping: the default role
    assert claim({"a": {"b": [1]}}, "a.b") == [1] and claim({"a": 1}, "a.b") is None


# Each token is made when its test runs: made at collection, minutes before in a whole suite,
# those with the usual lifetime would have expired.
@pytest.mark.parametrize(
    ("make_token", "says"),
    [
        (lambda: RSA.sign(exp=int(time.time()) - 120), "Signature has expired"),
        (lambda: RSA.sign(nbf=int(time.time()) + 600), "not yet valid"),
        (lambda: RSA.sign(iss="https://evil.test"), "Invalid issuer"),
        (lambda: RSA.sign(aud="someone-else"), "Audience doesn't match"),
        (lambda: RSA.sign(exp=None), 'missing the "exp" claim'),
        (lambda: RSA.sign(aud=None), 'missing the "aud" claim'),
        (lambda: OTHER.sign(), "Signature verification failed"),
        (lambda: unsigned(usual_claims(), "k1"), "algorithm 'none' is not one of"),
        (lambda: hmac_with_public_key(usual_claims(), RSA), "algorithm 'HS256' is not one of"),
        (lambda: EC.sign(), "algorithm 'ES256' is not one of"),
        (lambda: "a.b.c", "unreadable"),
        (lambda: RSA.sign(groups=["nobody"]), "no role"),
        (lambda: RSA.sign(sub=None), "no sub claim"),
    ],
)
def test_refused(make_token: Callable[[], str], says: str) -> None:
    assert says in refusal(JwtVerifier(jwt_settings()), make_token())


def test_an_allowed_algorithm_that_does_not_fit_the_key_is_refused() -> None:
    verifier = JwtVerifier(jwt_settings(algorithms=["RS256", "ES256"]))
    assert "cannot verify ES256" in refusal(verifier, EC.sign())


def test_leeway_allows_small_clock_skew_only() -> None:
    verifier = JwtVerifier(jwt_settings(leeway=60))
    assert verifier.verify(RSA.sign(exp=int(time.time()) - 30)).name == "alice"
    assert "expired" in refusal(verifier, RSA.sign(exp=int(time.time()) - 90))


# -- the JWKS ----------------------------------------------------------------------------------------------


class Provider:
    """What the JWKS URL answers now, and how often it was asked."""

    def __init__(self, *keys: SigningKey) -> None:
        self.document: Any = jwks(*keys)
        self.fetches = 0
        self.now = 1000.0

    def fetch(self, url: str, timeout: float) -> Any:
        assert url == "https://idp.test/jwks" and timeout == 5.0
        self.fetches += 1
        if isinstance(self.document, Exception):
            raise self.document
        return self.document

    def verifier(self, **values: Any) -> JwtVerifier:
        url = "https://idp.test/jwks"
        settings = jwt_settings(public_key="", jwks_url=url, algorithms=["RS256", "ES256"], **values)
        return JwtVerifier(settings, Jwks(settings, self.fetch, lambda: self.now))


def test_keys_by_kid_fetched_once_and_cached() -> None:
    provider = Provider(RSA, EC)
    verifier = provider.verifier()
    assert verifier.verify(RSA.sign()).name == "alice"
    assert verifier.verify(EC.sign(sub="bob")).name == "bob"
    provider.now += 299
    verifier.verify(RSA.sign())
    assert provider.fetches == 1
    provider.now += 1  # jwks_cache_seconds: fetched again
    verifier.verify(RSA.sign())
    assert provider.fetches == 2


def test_an_unknown_kid_refreshes_the_keys_at_most_every_refresh_interval() -> None:
    old, new = SigningKey("old"), SigningKey("new")
    provider = Provider(old)
    verifier = provider.verifier()
    verifier.verify(old.sign())
    provider.document = jwks(new)  # the provider rotated its key
    provider.now += 5
    assert "no key 'new'" in refusal(verifier, new.sign())  # asked again too soon: not fetched
    assert "no key 'made-up'" in refusal(verifier, SigningKey("made-up").sign())
    assert provider.fetches == 1
    provider.now += 5  # jwks_refresh_seconds since the last fetch
    assert verifier.verify(new.sign()).name == "alice"
    assert provider.fetches == 2
    assert "no key 'old'" in refusal(verifier, old.sign())  # withdrawn with the rotation


def test_a_failed_fetch_keeps_the_known_keys() -> None:
    provider = Provider(RSA)
    verifier = provider.verifier()
    verifier.verify(RSA.sign())
    provider.document = OSError("connection refused")
    provider.now += 400
    assert verifier.verify(RSA.sign()).name == "alice"
    assert provider.fetches == 2
    provider.document = {"keys": "nope"}
    provider.now += 10
    assert verifier.verify(RSA.sign()).name == "alice"


def test_no_keys_at_all_refuses() -> None:
    provider = Provider()
    provider.document = OSError("connection refused")
    assert "no key 'k1'" in refusal(provider.verifier(), RSA.sign())


def test_shared_secret_and_encryption_keys_in_the_jwks_are_never_used() -> None:
    provider = Provider(RSA)
    provider.document["keys"].append({"kty": "oct", "kid": "s1", "k": "c2VjcmV0", "alg": "HS256"})
    encrypting = SigningKey("enc-1")
    provider.document["keys"].append({**encrypting.jwk(), "use": "enc"})
    verifier = provider.verifier()
    assert "not one of" in refusal(verifier, hmac_with_public_key(usual_claims(), SigningKey("s1")))
    assert "no key 'enc-1'" in refusal(verifier, encrypting.sign())
    assert verifier.verify(RSA.sign()).name == "alice"


def test_a_key_is_used_only_with_its_declared_algorithm() -> None:
    es = SigningKey("e1", "ES256")
    provider = Provider(es)
    provider.document["keys"][0]["alg"] = "ES384"
    assert "is for ES384, the token says ES256" in refusal(provider.verifier(), es.sign())


def test_a_token_without_kid_uses_the_only_key() -> None:
    provider = Provider(RSA)
    verifier = provider.verifier()
    assert verifier.verify(RSA.sign(header={"kid": None})).name == "alice"
    provider.document = jwks(RSA, EC)
    provider.now += 400
    assert "no key None" in refusal(verifier, RSA.sign(header={"kid": None}))
