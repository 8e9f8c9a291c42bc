"""app.security.proxy_auth and Identities.identify, without a server: requests built by werkzeug
and passed through the real ProxyFix, as the app wraps itself when PROXY_COUNT is set."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from app.security.identity import Identities, Identity, Unknown
from config.settings import Settings
from tests.jwt_keys import AUDIENCE, ISSUER, SigningKey

SECRET = "proxy-secret"
KEY = SigningKey("k1")
PROXY = {"secret_sha256": hashlib.sha256(SECRET.encode()).hexdigest(), "roles": {"ops": "admin", "devs": "user"}}
THROUGH_NGINX = {"X-Forwarded-For": "192.0.2.7", "X-Procwire-Proxy-Secret": SECRET}


def settings_with(**values: Any) -> Settings:
    return Settings.model_validate({"TOKEN": "root", "PROXY_COUNT": 1, "AUTH_PROXY": PROXY, **values})


def request(headers: dict[str, str], peer: str = "127.0.0.1", query: str = "", proxy_count: int = 1) -> Request:
    """The request the app sees for one from ``peer``, after ProxyFix."""
    seen: list[Request] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(Request(environ))
        return []

    environ = EnvironBuilder(path="/ws", query_string=query, headers=headers, environ_base={"REMOTE_ADDR": peer})
    ProxyFix(app, x_for=proxy_count, x_proto=proxy_count)(environ.get_environ(), lambda *args: None)
    return seen[0]


def identify(settings: Settings, headers: dict[str, str], **options: Any) -> Identity | Unknown:
    return Identities.from_settings(settings).identify(request(headers, **options))


def test_the_proxy_names_the_user_and_the_groups_the_role() -> None:
    settings = settings_with()
    found = identify(settings, {**THROUGH_NGINX, "X-Forwarded-User": "alice", "X-Forwarded-Groups": "devs, ops"})
    assert isinstance(found, Identity) and (found.name, found.role) == ("alice", "admin")
    found = identify(settings, {**THROUGH_NGINX, "X-Forwarded-User": "bob", "X-Forwarded-Groups": "devs"})
    assert isinstance(found, Identity) and (found.name, found.role, found.policy.role) == ("bob", "user", "user")


@pytest.mark.parametrize(
    ("headers", "peer", "says"),
    [
        ({"X-Forwarded-For": "192.0.2.7"}, "127.0.0.1", "X-Procwire-Proxy-Secret is missing"),
        ({**THROUGH_NGINX, "X-Procwire-Proxy-Secret": "guess"}, "127.0.0.1", "X-Procwire-Proxy-Secret is wrong"),
        ({"X-Procwire-Proxy-Secret": SECRET}, "127.0.0.1", "X-Forwarded-For has 0 entries, PROXY_COUNT is 1"),
        (THROUGH_NGINX, "192.0.2.9", "the peer 192.0.2.9 is not in trusted_proxies"),
        (THROUGH_NGINX, "", "the peer unix is not in trusted_proxies"),
        ({**THROUGH_NGINX, "X-Forwarded-Groups": "strangers"}, "127.0.0.1", "'alice': no role"),
    ],
)
def test_refused(headers: dict[str, str], peer: str, says: str) -> None:
    found = identify(settings_with(), {**headers, "X-Forwarded-User": "alice"}, peer=peer)
    assert isinstance(found, Unknown) and found.rule == "auth_proxy" and found.presented
    assert says in found.message


def test_a_forged_header_does_not_stand_in_for_a_token() -> None:
    """Sent with a valid token, the header changes nothing; the token decides."""
    found = identify(settings_with(), {"X-Forwarded-User": "mallory", "Authorization": "Bearer root"}, peer="10.1.1.1")
    assert isinstance(found, Identity) and found.name == "default"


def test_other_trusted_proxies_the_unix_socket_and_other_names() -> None:
    proxy = {
        **PROXY,
        "trusted_proxies": ["10.0.0.0/8", "unix"],
        "user_header": "X-Auth-Request-User",
        "groups_header": "X-Auth-Request-Groups",
        "secret_header": "X-Proxy-Key",
        "default_role": "user",
    }
    settings = settings_with(AUTH_PROXY=proxy, PROXY_COUNT=2)
    headers = {"X-Forwarded-For": "192.0.2.7, 10.0.0.2", "X-Proxy-Key": SECRET, "X-Auth-Request-User": "carol"}
    for peer in ("10.2.3.4", ""):
        found = identify(settings, headers, peer=peer, proxy_count=2)
        assert isinstance(found, Identity) and (found.name, found.role) == ("carol", "user")
    found = identify(settings, headers, peer="127.0.0.1", proxy_count=2)
    assert isinstance(found, Unknown) and "127.0.0.1 is not in trusted_proxies" in found.message
    found = identify(settings, {**headers, "X-Forwarded-For": "10.0.0.2"}, peer="10.2.3.4", proxy_count=2)
    assert isinstance(found, Unknown) and "has 1 entries, PROXY_COUNT is 2" in found.message


def test_without_the_table_the_header_means_nothing() -> None:
    settings = Settings.model_validate({"TOKEN": "root", "PROXY_COUNT": 1})
    found = identify(settings, {**THROUGH_NGINX, "X-Forwarded-User": "alice"})
    assert found == Unknown("token", "missing or wrong token", False)


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"PROXY_COUNT": 0}, "AUTH_PROXY: needs PROXY_COUNT of at least 1"),
        ({"AUTH_PROXY": {**PROXY, "trusted_proxies": ["nginx.local"]}}, "not an address, a network or 'unix'"),
        ({"AUTH_PROXY": {**PROXY, "trusted_proxies": []}}, "at least 1"),
        ({"AUTH_PROXY": {"roles": {"a": "user"}}}, "secret_sha256"),
        ({"AUTH_PROXY": {**PROXY, "user_header": "X User"}}, "should match pattern"),
    ],
)
def test_the_table_refuses(values: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        settings_with(**values)


# -- single sign-on names ----------------------------------------------------------------------------------


def jwt_settings(**values: Any) -> Settings:
    table = {"public_key": KEY.public_pem, "issuer": ISSUER, "audience": AUDIENCE, "default_role": "user"}
    return settings_with(JWT=table, **values)


def test_a_jwt_is_tried_when_no_static_token_matches() -> None:
    settings = jwt_settings(TOKENS=[{"name": "ci", "role": "user", "sha256": hashlib.sha256(b"c").hexdigest()}])
    found = identify(settings, {"Authorization": f"Bearer {KEY.sign()}"})
    assert isinstance(found, Identity) and (found.name, found.role) == ("alice", "user")
    found = identify(settings, {}, query=f"token={KEY.sign(sub='bob')}")
    assert isinstance(found, Identity) and found.name == "bob"
    found = identify(settings, {"Authorization": "Bearer c"})
    assert isinstance(found, Identity) and found.name == "ci"
    assert identify(settings, {"Authorization": "Bearer nope"}) == Unknown("token", "missing or wrong token", True)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("default", "'default' is the name of a static token"),
        ("ci", "'ci' is the name of a static token"),
        ("share:1", "cannot name an identity"),
        ("(public)", "cannot name an identity"),
        ("a" * 65, "cannot name an identity"),
    ],
)
def test_single_sign_on_names_never_take_a_static_token_s(name: str, says: str) -> None:
    settings = jwt_settings(TOKENS=[{"name": "ci", "role": "user", "sha256": hashlib.sha256(b"c").hexdigest()}])
    found = identify(settings, {"Authorization": f"Bearer {KEY.sign(sub=name)}"})
    assert isinstance(found, Unknown) and found.rule == "name" and says in found.message
    found = identify(settings, {**THROUGH_NGINX, "X-Forwarded-User": name, "X-Forwarded-Groups": "ops"})
    assert isinstance(found, Unknown) and found.rule == "name" and says in found.message
