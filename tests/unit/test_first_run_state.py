"""The state behind ``make run``'s block: the development token file and the login codes (no server)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from config.devtoken import dev_token_file, load_or_create, regenerate
from config.login_codes import CODE_LIFETIME, CodeStore, Redeemed
from config.settings import Settings
from config.startup import Access, Announcement, base_url, resolve_access, terminal_audit_file
from config.state import StateError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_development_token_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = dev_token_file(str(tmp_path / "state"), "127.0.0.1:9999")
    assert path.name == "token-127.0.0.1_9999"
    token, created = load_or_create(path)
    assert created and len(token) >= 43
    assert (mode(path), mode(path.parent)) == (0o600, 0o700)
    assert load_or_create(path) == (token, False)
    assert regenerate(path) != token
    assert load_or_create(path)[0] != token


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token-x"
    path.write_text("leaked\n")
    path.chmod(0o644)
    with pytest.raises(StateError, match="not a private file"):
        load_or_create(path)
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StateError):
        load_or_create(path)


def test_two_servers_of_two_binds_have_two_tokens(tmp_path: Path) -> None:
    first = load_or_create(dev_token_file(str(tmp_path), "127.0.0.1:9999"))[0]
    second = load_or_create(dev_token_file(str(tmp_path), "127.0.0.1:9998"))[0]
    assert first != second


def test_a_code_is_good_once_and_for_ten_minutes(tmp_path: Path) -> None:
    store = CodeStore(tmp_path / "login")
    store.reset()
    assert mode(store.directory) == 0o700
    code = store.issue()
    assert [mode(path) for path in store.directory.iterdir()] == [0o600]
    assert code not in os.listdir(store.directory)  # files are named by the code's SHA-256
    assert store.redeem(code) is Redeemed.OK
    assert store.redeem(code) is Redeemed.UNKNOWN
    late = store.issue()
    assert store.redeem(late, now=time.time() + CODE_LIFETIME + 1) is Redeemed.EXPIRED
    assert store.redeem(late) is Redeemed.UNKNOWN  # an expired code is gone too
    for wrong in ("", "../../etc/passwd", "x" * 10_000):
        assert store.redeem(wrong) is Redeemed.UNKNOWN
    stale = store.issue()
    store.reset()  # a new start
    assert store.redeem(stale) is Redeemed.UNKNOWN


def settings(**values: object) -> Settings:
    return Settings.model_validate({"STATE_DIR": "/nonexistent-state", **values})


def test_a_set_token_wins_and_only_tokens_with_an_admin_leave_no_token(tmp_path: Path) -> None:
    admin = {"name": "ops", "role": "admin", "sha256": "0" * 64}
    user = {"name": "alice", "role": "user", "sha256": "1" * 64}
    assert resolve_access(settings(TOKEN="set")) == Access("set")
    assert resolve_access(settings(TOKENS=[admin, user])) == Access(None)
    assert resolve_access(settings(TOKENS=[user], TOKEN="")) == Access(None)  # TOKEN = "" written out
    kept = resolve_access(settings(TOKENS=[user], STATE_DIR=str(tmp_path)))
    assert kept.token and kept.alongside and kept.dev_file == dev_token_file(str(tmp_path), "127.0.0.1:9999")


def test_audit_to_a_file_only_on_a_terminal_and_when_not_set() -> None:
    assert terminal_audit_file(settings(), True) == Path("/nonexistent-state/audit-127.0.0.1_9999.log")
    assert terminal_audit_file(settings(), False) is None
    assert terminal_audit_file(settings(AUDIT_LOG="-"), True) is None


@pytest.mark.parametrize(
    ("bind", "url"),
    [
        ("127.0.0.1:9999", "http://127.0.0.1:9999"),
        ("0.0.0.0:80", "http://127.0.0.1:80"),
        ("[::]:9999", "http://[::1]:9999"),
        ("[::1]:9999", "http://[::1]:9999"),
        ("unix:/run/procwire/gunicorn.sock", None),
    ],
)
def test_the_printed_address(bind: str, url: str | None) -> None:
    assert base_url(bind) == url


def test_behind_a_socket_the_block_points_at_the_proxy() -> None:
    text = Announcement(settings(BIND="unix:/run/p.sock"), Access("t"), code="c", environ={}).render()
    assert "https://YOUR-PROXY/?code=c" in text and "export PROCWIRE_URL=wss://YOUR-PROXY/ws" in text
