"""Share tokens and their file store, as two workers of one server see them (no server)."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from app.security.shares import FileStore, Refused, Shares, looks_like_share
from procwire_client.commands.sharing import duration
from procwire_client.core.params import share_link

BIND = "127.0.0.1:9999"


def workers(state: Path) -> tuple[Shares, Shares]:
    """Two workers of one server: each its own Shares, one STATE_DIR."""
    return Shares(FileStore(str(state), BIND)), Shares(FileStore(str(state), BIND))


def test_a_token_made_by_one_worker_is_checked_by_another(tmp_path: Path) -> None:
    first, second = workers(tmp_path)
    grant, token = first.issue(7, "alice", "view", 60, False)
    assert looks_like_share(token)
    checked = second.check(token)
    assert checked == grant and (checked.proc, checked.owner, checked.mode) == (7, "alice", "view")
    secret = tmp_path / "share-secret-127.0.0.1_9999"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_a_new_secret_invalidates_every_link_on_every_worker(tmp_path: Path) -> None:
    first, second = workers(tmp_path)
    _, token = first.issue(7, "alice", "view", 60, False)
    second.check(token)
    (tmp_path / "share-secret-127.0.0.1_9999").unlink()
    _, fresh = second.issue(7, "alice", "view", 60, False)
    with pytest.raises(Refused, match="bad signature"):
        second.check(token)
    with pytest.raises(Refused, match="bad signature"):
        first.check(token)
    first.check(fresh)


def test_a_tampered_token_or_another_servers_is_refused(tmp_path: Path) -> None:
    ours, _ = workers(tmp_path / "ours")
    theirs, _ = workers(tmp_path / "theirs")
    _, token = ours.issue(7, "alice", "control", 60, False)
    payload, signature = token.rsplit(".", 1)
    _, forged = theirs.issue(7, "alice", "control", 60, False)
    for bad in (f"{payload}.{other_first(signature)}", f"{other_first(payload)}.{signature}", forged):
        with pytest.raises(Refused, match="bad signature"):
            ours.check(bad)
    with pytest.raises(Refused, match="not valid"):
        ours.check("no.token")


def other_first(text: str) -> str:
    """``text`` with another first character (never only padding bits, as the last may be)."""
    return ("B" if text[0] == "A" else "A") + text[1:]


def test_an_expired_token_is_refused(tmp_path: Path) -> None:
    shares, _ = workers(tmp_path)
    grant, token = shares.issue(7, "alice", "view", 0.05, False)
    time.sleep(0.1)
    with pytest.raises(Refused, match=f"{grant.id} expired"):
        shares.check(token)


def test_a_revocation_by_one_worker_holds_on_the_other(tmp_path: Path) -> None:
    first, second = workers(tmp_path)
    grant, token = first.issue(7, "alice", "view", 60, False)
    found = second.store.grant(grant.id)
    assert found == grant
    second.store.revoke(found)
    with pytest.raises(Refused, match="revoked"):
        first.check(token)
    assert second.store.grant("unknown") is None


def test_a_single_use_token_is_spent_once_across_workers(tmp_path: Path) -> None:
    first, second = workers(tmp_path)
    _, token = first.issue(7, "alice", "view", 60, True)
    first.spend(second.check(token))
    with pytest.raises(Refused, match="already used"):
        second.spend(first.check(token))
    many, _ = first.issue(7, "alice", "view", 60, False)
    first.spend(many)
    first.spend(many)  # not single use: spending is a no-op


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800)])
def test_cli_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "1w", "-5m", "h"])
def test_cli_durations_refused(text: str) -> None:
    with pytest.raises(Exception, match="not a duration"):
        duration(text)


def test_share_links_split_into_url_and_token() -> None:
    assert share_link("wss://h.example/pw/ws?share=abc.def") == ("wss://h.example/pw/ws", "abc.def")
    for bad in ("http://h/ws?share=x", "ws://h/ws?token=x", "7"):
        with pytest.raises(ValueError, match="not a share link"):
            share_link(bad)
