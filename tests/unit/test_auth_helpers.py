"""app.auth's pure helper: the Origin check (tokens: tests/unit/test_identity.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.security.auth import origin_allowed

# -- origin_allowed ---------------------------------------------------------------


def test_no_origin_is_not_a_browser() -> None:
    assert origin_allowed(None, "127.0.0.1:9999", []) is True


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1:9999", "127.0.0.1:9999"),
        ("http://localhost:9999", "localhost:9999"),
        ("http://LOCALHOST:9999", "localhost:9999"),
        ("http://localhost:9999", "LocalHost:9999"),
        ("http://localhost:9999/", "localhost:9999"),
        ("https://console.example", "console.example"),
        ("http://[::1]:9999", "[::1]:9999"),
    ],
)
def test_same_origin_is_allowed(origin: str, host: str) -> None:
    assert origin_allowed(origin, host, []) is True


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://evil.example", "127.0.0.1:9999"),
        ("http://127.0.0.1:9998", "127.0.0.1:9999"),
        ("http://127.0.0.1", "127.0.0.1:9999"),
        ("http://localhost:9999", "127.0.0.1:9999"),
        ("http://console.example.evil.net", "console.example"),
        ("http://evilconsole.example", "console.example"),
        ("http://console.example@evil.net", "console.example"),
        ("null", "127.0.0.1:9999"),
        ("", "127.0.0.1:9999"),
        ("127.0.0.1:9999", "127.0.0.1:9999"),  # not a URL: no netloc
        ("file://", "127.0.0.1:9999"),
    ],
)
def test_cross_origin_is_refused(origin: str, host: str) -> None:
    assert origin_allowed(origin, host, []) is False


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://ide.example", ["https://ide.example"]),
        ("https://ide.example", ["https://other.example", "https://ide.example"]),
        ("https://IDE.example", ["https://ide.example"]),
        ("https://ide.example", ["HTTPS://IDE.EXAMPLE/"]),
        ("https://ide.example/", ["https://ide.example"]),
        ("https://anything.example", ["*"]),
        ("null", ["*"]),
        ("null", ["null"]),
    ],
)
def test_listed_origin_is_allowed(origin: str, allowed: list[str]) -> None:
    assert origin_allowed(origin, "127.0.0.1:9999", allowed) is True


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://ide.example", ["https://ide.example"]),  # scheme differs
        ("https://ide.example:8443", ["https://ide.example"]),  # port differs
        ("https://ide.example.evil.net", ["https://ide.example"]),
        ("https://evil.net", ["https://ide.example", "https://other.example"]),
        ("https://sub.ide.example", ["https://ide.example"]),
        ("https://ide.example", ["ide.example"]),  # an entry is a whole origin, not a host
        ("https://ide.example", ["*.example"]),  # no wildcards but "*" alone
        ("https://ide.example", [""]),
    ],
)
def test_unlisted_origin_is_refused(origin: str, allowed: list[str]) -> None:
    assert origin_allowed(origin, "127.0.0.1:9999", allowed) is False


def test_allowed_list_does_not_replace_same_origin() -> None:
    assert origin_allowed("http://127.0.0.1:9999", "127.0.0.1:9999", ["https://ide.example"]) is True


HOSTS = st.from_regex(r"[a-z][a-z0-9]{0,10}(\.[a-z]{2,6}){0,2}(:[1-9][0-9]{0,4})?", fullmatch=True)


@given(HOSTS, st.sampled_from(["http", "https"]))
def test_any_host_allows_its_own_origin(host: str, scheme: str) -> None:
    assert origin_allowed(f"{scheme}://{host}", host, []) is True
    assert origin_allowed(f"{scheme}://{host.upper()}", host, []) is True


@given(HOSTS, HOSTS)
def test_another_host_is_refused_unless_listed(host: str, other: str) -> None:
    origin = f"https://{other}"
    assert origin_allowed(origin, host, []) is (other == host)
    assert origin_allowed(origin, host, [origin]) is True
