"""View attachments and share links, against the real server (docs/protocol.md, "Sharing").

One server for the module, with an audit log; its default token is an admin's,
``alice`` and ``bob`` are users.  Revocation across workers and hosts has its
own servers (WORKERS=2 without Redis; two hosts on one Redis).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket

from tests.client import RpcClient, RpcFailure, read_close
from tests.redis_server import RedisServer
from tests.server import Server, wait_until

PERMISSION_DENIED = -32003
ALICE, BOB = "alice-token-0123456789", "bob-token-0123456789"
POLICY = {"allow": ["/usr/bin/*", "/bin/*"], "cwd_roots": ["/"], "pty": True}
CONTROL_CALLS: dict[str, dict[str, Any]] = {
    "write": {"data": "refused\n"},
    "close_stdin": {},
    "resize": {"rows": 10, "cols": 20},
    "signal": {"signal": "TERM"},
    "stop": {},
    "kill": {},
    "release": {},
}


def users_env(directory: Path) -> dict[str, str]:
    tokens = [
        {"name": name, "role": "user", "sha256": hashlib.sha256(token.encode()).hexdigest(), "policy": POLICY}
        for name, token in (("alice", ALICE), ("bob", BOB))
    ]
    return {
        "PROCWIRE_TOKENS": json.dumps(tokens),
        "PROCWIRE_AUDIT_LOG": str(directory / "audit.log"),
        "PROCWIRE_KILL_GRACE": "0.5",
    }


def audit_lines(directory: Path) -> list[dict[str, Any]]:
    path = directory / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def audited(directory: Path, **fields: Any) -> bool:
    """Whether an audit line with these fields is written (within a few seconds)."""

    def present() -> bool:
        return any(all(line.get(key) == value for key, value in fields.items()) for line in audit_lines(directory))

    return wait_until(present, timeout=5)


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


@contextlib.contextmanager
def connected(url: str, token: str | None) -> Iterator[RpcClient]:
    client = RpcClient(url, token)
    try:
        yield client
    finally:
        client.close()


def share_connection(link: str) -> RpcClient:
    return RpcClient(link, None)


def upgrade_status(url: str, header: list[str] | None = None) -> int:
    """The HTTP status of a refused upgrade."""
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, timeout=10, header=header or []).close()
    return refused.value.status_code


def started_cat(client: RpcClient) -> int:
    proc: int = client.call("start", argv=["cat"], pty={"rows": 24, "cols": 80})["proc"]
    return proc


def read_output(client: RpcClient, proc: int, expected: bytes, timeout: float = 10) -> bytes:
    """Output of ``proc`` until ``expected`` is in it (bounded); other messages stay queued."""
    seen = bytearray()
    deadline = time.monotonic() + timeout
    kept: list[Any] = []
    client.ws.settimeout(timeout)
    try:
        while expected not in seen:
            assert time.monotonic() < deadline, f"no {expected!r} in {bytes(seen)!r}"
            message = client.next_message()
            params = message.get("params", {}) if isinstance(message, dict) else {}
            if message.get("method") == "output" and params.get("proc") == proc:
                seen += params["data"].encode()
            else:
                kept.append(message)
    finally:
        client.pending.extendleft(reversed(kept))
    return bytes(seen)


def notification(client: RpcClient, method: str, match: Any = lambda params: True, timeout: float = 10) -> Any:
    """The next ``method`` notification whose params ``match`` (others stay queued)."""
    deadline = time.monotonic() + timeout
    kept: list[Any] = []
    try:
        while time.monotonic() < deadline:
            message = client.next_message()
            if isinstance(message, dict) and message.get("method") == method and match(message["params"]):
                return message["params"]
            kept.append(message)
        raise AssertionError(f"no {method} notification in time")
    finally:
        client.pending.extendleft(reversed(kept))


# -- view attachments ---------------------------------------------------------------------------


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
        refusal = notification_or_error(viewer)
        assert refusal["id"] is None and refusal["error"]["code"] == PERMISSION_DENIED
        info = owner.call("find", pid=owner.call("list")["processes"][0]["pid"])
        assert info["state"] == "running" and info["size"] == {"rows": 24, "cols": 80}
        owner.call("write", proc=proc, data="from the owner\n")
        assert b"refused" not in read_output(viewer, proc, b"from the owner")
        owner.call("kill", proc=proc)


def notification_or_error(client: RpcClient) -> dict[str, Any]:
    """The next error answer with id null (other messages stay queued)."""
    kept: list[Any] = []
    try:
        while True:
            message = client.next_message()
            if isinstance(message, dict) and "error" in message:
                return message
            kept.append(message)
    finally:
        client.pending.extendleft(reversed(kept))


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
            pids = {item["proc"]: item["pid"] for item in owner.call("list")["processes"]}
            assert guest.call("find", pid=pids[proc])["proc"] == proc
            assert guest.error_of("find", pid=pids[other]).code == -32002
            assert guest.call("ping")["time"] > 0
            owner.call("write", proc=proc, data="seen by the guest\n")
            read_output(guest, proc, b"seen by the guest")
        for item in (proc, other):
            owner.call("kill", proc=item)
        token = share["token"]
        assert http_status(shared_server, "/api/processes", token) == 401
        assert http_status(shared_server, "/api/clients", token) == 401


def http_status(server: Server, path: str, token: str) -> int:
    request = urllib.request.Request(f"{server.http}{path}", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


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
        payload, signature = expiring["token"].rsplit(".", 1)
        tampered = expiring["url"].replace(expiring["token"], f"{payload[:-2]}AA.{signature}")
        refused_with_audit(directory, tampered, "share link not valid (bad signature)")
        time.sleep(0.6)
        refused_with_audit(directory, expiring["url"], f"share link {expiring['id']} expired")
        header = [f"Authorization: Bearer {revoked['token']}"]
        assert upgrade_status(shared_server.url, header) == 401
        owner.call("kill", proc=proc)


def test_a_link_for_another_process_gets_nothing_of_this_one(shared_server: Server, directory: Path) -> None:
    with connected(shared_server.url, ALICE) as owner:
        proc, other = started_cat(owner), started_cat(owner)
        share = owner.call("share", proc=proc)
        with share_connection(share["url"]) as guest:
            assert guest.error_of("attach", proc=other).code == PERMISSION_DENIED
            assert audited(directory, event="refused", rule="share", method="attach", proc=other)
        for item in (proc, other):
            owner.call("kill", proc=item)


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
        pid = owner.call("list")["processes"][0]["pid"]
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


def guests_on_every_node(link: str, nodes: int, timeout: float = 20) -> list[RpcClient]:
    """Share connections until ``nodes`` distinct nodes serve one each (the kernel spreads them)."""
    guests: dict[str, RpcClient] = {}
    deadline = time.monotonic() + timeout
    while len(guests) < nodes and time.monotonic() < deadline:
        guest = share_connection(link)
        node = guest.hello["params"]["node"]
        if node in guests:
            guest.close()
        else:
            guests[node] = guest
    assert len(guests) == nodes, f"served by {list(guests)} only"
    return list(guests.values())


def test_revocation_holds_on_every_worker_without_redis(tmp_path: Path) -> None:
    server = Server(env={**users_env(tmp_path), "PROCWIRE_WORKERS": "2"}).start()
    try:
        with connected(server.url, ALICE) as owner:
            proc = started_cat(owner)
            share = owner.call("share", proc=proc)
            guests = guests_on_every_node(share["url"], 2)
            owner.call("unshare", id=share["id"])
            for guest in guests:
                assert read_close(guest.ws) == (4003, "share revoked")
            for _ in range(6):  # both workers, most likely: each refuses
                assert upgrade_status(share["url"]) == 401
            owner.call("kill", proc=proc)
    finally:
        server.stop()


def test_a_single_use_link_is_used_once_across_workers(tmp_path: Path) -> None:
    server = Server(env={**users_env(tmp_path), "PROCWIRE_WORKERS": "2"}).start()
    try:
        with connected(server.url, ALICE) as owner:
            proc = started_cat(owner)
            share = owner.call("share", proc=proc, single_use=True)
            share_connection(share["url"]).close()
            for _ in range(6):
                assert upgrade_status(share["url"]) == 401
            owner.call("kill", proc=proc)
    finally:
        server.stop()


def test_revocation_holds_on_every_host_of_a_cluster(tmp_path: Path) -> None:
    redis = RedisServer().start()
    hosts: list[Server] = []
    try:
        env = {**users_env(tmp_path), "PROCWIRE_REDIS_URL": redis.url, "PROCWIRE_STATE_DIR": str(tmp_path / "state")}
        hosts = [Server(env=env).start(), Server(env=env).start()]
        with connected(hosts[0].url, ALICE) as owner:
            proc = started_cat(owner)
            share = owner.call("share", proc=proc)
            link_b = share["url"].replace(f":{hosts[0].port}/", f":{hosts[1].port}/")
            guest = share_connection(link_b)
            guest.call("attach", proc=proc)
            owner.call("write", proc=proc, data="across hosts\n")
            read_output(guest, proc, b"across hosts")
            with pytest.raises(RpcFailure):
                guest.call("write", proc=proc, data="no\n")
            owner.call("unshare", id=share["id"])
            assert read_close(guest.ws) == (4003, "share revoked")
            assert upgrade_status(link_b) == 401
            assert upgrade_status(share["url"]) == 401
            owner.call("kill", proc=proc)
    finally:
        for host in hosts:
            host.stop()
        redis.stop()
