"""View attachments and share links, against the real server (docs/protocol.md, "Sharing").

One server for the module, with an audit log; its default token is an admin's,
``alice`` and ``bob`` are users.  Revocation across workers and hosts:
tests/test_sharing_revocation.py.  A link's refusal on the HTTP API goes through
Flask's test client (``client``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.security.auth import SHARES_KEY
from app.security.shares import Shares
from tests.client import RpcClient, read_close
from tests.flask_app import bearer
from tests.server import Server
from tests.sharing_support import (
    ALICE,
    BOB,
    PERMISSION_DENIED,
    audited,
    connected,
    error_without_id,
    notification,
    pid_of,
    read_output,
    share_connection,
    started_cat,
    upgrade_status,
    users_env,
)

CONTROL_CALLS: dict[str, dict[str, Any]] = {
    "write": {"data": "refused\n"},
    "close_stdin": {},
    "resize": {"rows": 10, "cols": 20},
    "signal": {"signal": "TERM"},
    "stop": {},
    "kill": {},
    "release": {},
}


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sharing")


@pytest.fixture(scope="module")
def shared_server(directory: Path) -> Iterator[Server]:
    server = Server(env=users_env(directory)).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_view_attachment_is_refused_every_control_method_and_nothing_changes(
    shared_server: Server, directory: Path
) -> None:
    with connected(shared_server.url, ALICE) as owner, connected(shared_server.url, ALICE) as viewer:
        proc = started_cat(owner)
        answer = viewer.call("attach", proc=proc, mode="view")
        assert answer["mode"] == "view"
        for method, params in CONTROL_CALLS.items():
            failure = viewer.error_of(method, proc=proc, **params)
            assert failure.code == PERMISSION_DENIED, (method, failure)
            assert audited(directory, event="refused", rule="view", method=method, proc=proc, token="alice")
        viewer.send_binary(b"\x00" + proc.to_bytes(4, "big") + b"binary refused\n")
        refusal = error_without_id(viewer)
        assert refusal["id"] is None and refusal["error"]["code"] == PERMISSION_DENIED
        info = owner.call("find", pid=pid_of(owner, proc))
        assert info["state"] == "running" and info["size"] == {"rows": 24, "cols": 80}
        owner.call("write", proc=proc, data="from the owner\n")
        assert b"refused" not in read_output(viewer, proc, b"from the owner")
        owner.call("kill", proc=proc)


def test_a_control_attachment_still_controls_and_detach_ends_the_view_mode(shared_server: Server) -> None:
    with connected(shared_server.url, ALICE) as owner, connected(shared_server.url, ALICE) as other:
        proc = started_cat(owner)
        other.call("attach", proc=proc, mode="view")
        other.call("detach", proc=proc)
        assert other.call("attach", proc=proc)["mode"] == "control"
        other.call("write", proc=proc, data="typed\n")
        read_output(owner, proc, b"typed")
        other.call("kill", proc=proc)


# -- share links --------------------------------------------------------------------------------


def test_a_view_link_sees_one_process_and_may_do_nothing_else(shared_server: Server, directory: Path) -> None:
    with connected(shared_server.url, ALICE) as owner:
        proc = started_cat(owner)
        other = started_cat(owner)
        share = owner.call("share", proc=proc)
        assert share["mode"] == "view" and share["url"].startswith(f"ws://127.0.0.1:{shared_server.port}/ws?share=")
        assert share["expires_at"] == pytest.approx(time.time() + 3600, abs=60)
        assert audited(directory, event="share", share=share["id"], proc=proc, mode="view", token="alice")
        with share_connection(share["url"]) as guest:
            assert guest.hello["params"]["identity"] == {
                "name": f"share:{share['id']}",
                "role": "share",
                "share": {"id": share["id"], "proc": proc, "mode": "view"},
            }
            assert guest.call("attach", proc=proc)["mode"] == "view"
            assert audited(directory, event="attach", proc=proc, mode="view", share=share["id"])
            assert guest.error_of("attach", proc=proc, mode="control").code == PERMISSION_DENIED
            for method, params in CONTROL_CALLS.items():
                assert guest.error_of(method, proc=proc, **params).code == PERMISSION_DENIED, method
            for method, params in {
                "start": {"argv": ["true"]},
                "run": {"argv": ["true"]},
                "list": {},
                "lookpath": {"file": "cat"},
                "share": {"proc": proc},
                "unshare": {"id": share["id"]},
                "attach": {"proc": other},
                "wait": {"proc": other, "timeout": 0.1},
            }.items():
                assert guest.error_of(method, **params).code == PERMISSION_DENIED, method
            assert guest.call("find", pid=pid_of(owner, proc))["proc"] == proc
            assert guest.error_of("find", pid=pid_of(owner, other)).code == -32002
            assert guest.call("ping")["time"] > 0
            owner.call("write", proc=proc, data="seen by the guest\n")
            read_output(guest, proc, b"seen by the guest")
        for item in (proc, other):
            owner.call("kill", proc=item)


@pytest.mark.parametrize("path", ["/api/processes", "/api/clients"])
def test_a_link_opens_nothing_of_the_http_api(app: Flask, client: FlaskClient, path: str) -> None:
    """A share link's token (as the ``share`` method makes it) opens /ws only."""
    shares: Shares = app.extensions[SHARES_KEY]
    _grant, token = shares.issue(1, "alice", "view", 3600, single_use=False)
    for response in (client.get(path, headers=bearer(token)), client.get(f"{path}?share={token}")):
        assert (response.status_code, response.json["error"]) == (401, "a share link opens /ws only")


def test_a_control_link_drives_its_process_by_bearer_token(shared_server: Server) -> None:
    with connected(shared_server.url, ALICE) as owner:
        proc = started_cat(owner)
        share = owner.call("share", proc=proc, mode="control", expires_in=60)
        guest = RpcClient(shared_server.url, None, header=[f"Authorization: Bearer {share['token']}"])
        try:
            assert guest.call("attach", proc=proc)["mode"] == "control"
            guest.call("write", proc=proc, data="driven\n")
            guest.call("resize", proc=proc, rows=30, cols=100)
            read_output(owner, proc, b"driven")
            assert guest.error_of("start", argv=["true"]).code == PERMISSION_DENIED
            guest.call("kill", proc=proc)
            assert guest.call("wait", proc=proc)["signal"] == "SIGKILL"
        finally:
            guest.close()


def test_only_the_owner_or_an_admin_shares_and_unshares(shared_server: Server) -> None:
    with connected(shared_server.url, ALICE) as alice, connected(shared_server.url, BOB) as bob:
        proc = started_cat(alice)
        assert bob.error_of("share", proc=proc).code == -32002
        share = alice.call("share", proc=proc)
        assert bob.error_of("unshare", id=share["id"]).code == -32001
        with connected(shared_server.url, shared_server.token) as admin:
            by_admin = admin.call("share", proc=proc, mode="control")
            admin.call("unshare", id=share["id"])
        alice.call("unshare", id=by_admin["id"])
        assert alice.error_of("share", proc=proc, expires_in=8 * 24 * 3600).code == -32602
        alice.call("kill", proc=proc)


def refused_with_audit(directory: Path, url: str, message: str) -> None:
    assert upgrade_status(url) == 401
    assert audited(directory, event="refused", rule="share", code=401, message=message), message


def test_expired_tampered_revoked_and_reused_links_are_refused_before_the_upgrade(
    shared_server: Server, directory: Path
) -> None:
    with connected(shared_server.url, ALICE) as owner:
        proc = started_cat(owner)
        expiring = owner.call("share", proc=proc, expires_in=0.5)
        revoked = owner.call("share", proc=proc)
        single = owner.call("share", proc=proc, single_use=True)
        share_connection(single["url"]).close()
        refused_with_audit(directory, single["url"], f"share link {single['id']} was already used")
        owner.call("unshare", id=revoked["id"])
        assert audited(directory, event="unshare", share=revoked["id"], proc=proc)
        refused_with_audit(directory, revoked["url"], f"share link {revoked['id']} was revoked")
        token = expiring["token"]
        tampered = expiring["url"].replace(token, ("B" if token[0] == "A" else "A") + token[1:])
        refused_with_audit(directory, tampered, "share link not valid (bad signature)")
        time.sleep(0.6)
        refused_with_audit(directory, expiring["url"], f"share link {expiring['id']} expired")
        header = [f"Authorization: Bearer {revoked['token']}"]
        assert upgrade_status(shared_server.url, header) == 401
        owner.call("kill", proc=proc)


def test_a_link_gets_nothing_of_another_process_nor_of_its_own_once_released(
    shared_server: Server, directory: Path
) -> None:
    with connected(shared_server.url, ALICE) as owner:
        proc, other = started_cat(owner), started_cat(owner)
        share = owner.call("share", proc=proc)
        with share_connection(share["url"]) as guest:
            assert guest.error_of("attach", proc=other).code == PERMISSION_DENIED
            assert audited(directory, event="refused", rule="share", method="attach", proc=other)
        for item in (proc, other):
            owner.call("kill", proc=item)
            owner.call("wait", proc=item)
        share_connection(share["url"]).close()  # an exited process can still be watched (its history, its exit)
        owner.call("release", proc=proc)
        refused_with_audit(directory, share["url"], f"share link {share['id']}: process {proc} no longer exists")


def test_unshare_closes_the_links_connections_with_4003(shared_server: Server) -> None:
    with connected(shared_server.url, ALICE) as owner:
        proc = started_cat(owner)
        share = owner.call("share", proc=proc)
        guest = share_connection(share["url"])
        guest.call("attach", proc=proc)
        owner.call("unshare", id=share["id"])
        assert read_close(guest.ws) == (4003, "share revoked")
        owner.call("kill", proc=proc)


def test_viewers_in_find_and_the_owners_notification(shared_server: Server) -> None:
    with connected(shared_server.url, ALICE) as owner:
        proc = started_cat(owner)
        pid = pid_of(owner, proc)
        owner_id = owner.hello["params"]["client_id"]
        assert owner.call("find", pid=pid)["viewers"] == [{"client": owner_id, "name": "alice", "mode": "control"}]
        share = owner.call("share", proc=proc)
        with share_connection(share["url"]) as guest:
            guest.call("attach", proc=proc)
            guest_id = guest.hello["params"]["client_id"]
            expected = {"client": guest_id, "name": f"share:{share['id']}", "mode": "view"}
            seen = notification(owner, "viewers", lambda params: expected in params["viewers"])
            assert seen["proc"] == proc
            assert expected in owner.call("find", pid=pid)["viewers"]
        gone = notification(owner, "viewers", lambda params: all(v["client"] != guest_id for v in params["viewers"]))
        assert gone["viewers"] == [{"client": owner_id, "name": "alice", "mode": "control"}]
        owner.call("kill", proc=proc)


# -- revocation on every worker and host --------------------------------------------------------
