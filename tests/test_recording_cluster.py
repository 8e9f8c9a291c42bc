"""Recordings in cluster mode: two hosts sharing one real Redis, each with its own
RECORDINGS_DIR (as on two machines); either lists every host's recordings and serves
every file, each token seeing only its own."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client import RpcClient
from tests.recordings import api, fetched, listed, pipes, stream_bytes
from tests.redis_server import RedisServer
from tests.server import Server
from tests.test_cluster import ALICE, BOB, cluster_env


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    redis = RedisServer().start()
    started: list[Server] = []
    try:
        for name in ("a", "b"):
            env = cluster_env(redis, tmp_path / "state", PROCWIRE_RECORDINGS_DIR=str(tmp_path / f"recordings-{name}"))
            started.append(Server(env=env).start())
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()
        redis.stop()


def test_each_host_lists_and_serves_every_hosts_recordings(hosts: tuple[Server, Server]) -> None:
    a, b = hosts
    with RpcClient(a.url, ALICE) as alice, RpcClient(b.url, BOB) as bob:
        # More than one chunk of the bus (512 KiB) once recorded: a file fetched in several requests.
        big = alice.call("start", argv=["head", "-c", "1500000", "/dev/urandom"], binary=True, record=True)
        got = alice.collect(big["proc"])
        small = bob.call("start", argv=["echo", "bob on b"], record=True)
        bob.collect(small["proc"])
    everything = listed(b, b.token)
    assert {big["recording"], small["recording"]} <= set(everything)
    assert set(listed(b, ALICE)) == {big["recording"]}  # alice's, from the other host
    assert set(listed(a, BOB)) == {small["recording"]}
    from_a, from_b = fetched(a, ALICE, big["recording"]), fetched(b, ALICE, big["recording"])
    assert hashlib.sha256(from_a).digest() == hashlib.sha256(from_b).digest() and len(from_b) > 1_500_000
    assert stream_bytes(pipes(from_b)[1], "stdout") == bytes(got.stdout)
    assert api(b, BOB, f"/api/recordings/{big['recording']}")[0] == 404
    assert fetched(a, a.token, small["recording"]) == fetched(b, b.token, small["recording"])
