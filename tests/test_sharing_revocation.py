"""Share links revoked and spent on every worker (WORKERS=2, no Redis) and every host (two hosts, one Redis)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.client import RpcClient, RpcFailure, read_close
from tests.redis_server import RedisServer
from tests.server import Server, wait_until
from tests.sharing_support import (
    ALICE,
    connected,
    read_output,
    share_connection,
    started_cat,
    upgrade_status,
    users_env,
)


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
            assert wait_until(lambda: attached(guest, proc), 10)  # once host B knows the process
            owner.call("write", proc=proc, data="across hosts\n")
            read_output(guest, proc, b"across hosts")
            with pytest.raises(RpcFailure):
                guest.call("write", proc=proc, data="no\n")
            owner.call("unshare", id=share["id"])
            assert read_close(guest.ws) == (4003, "share revoked")
            assert upgrade_status(link_b) == 401
            assert upgrade_status(share["url"]) == 401
            single = owner.call("share", proc=proc, single_use=True)
            share_connection(single["url"].replace(f":{hosts[0].port}/", f":{hosts[1].port}/")).close()
            assert upgrade_status(single["url"]) == 401  # used on the other host
            owner.call("kill", proc=proc)
    finally:
        for host in hosts:
            host.stop()
        redis.stop()


def attached(guest: RpcClient, proc: int) -> bool:
    """Attach, unless the other host does not know the process yet (its record reaches Redis
    through the starting host's write pipeline, a moment after the start)."""
    try:
        guest.call("attach", proc=proc)
    except RpcFailure as refused:
        if refused.code != -32002:
            raise
        return False
    return True
