"""Cluster mode as deployed (issue 10): two hosts of two workers, one Redis, one nginx in front.

A client starts processes through nginx, reconnects until it lands on
another worker of another host, and carries on with them from there; then a
worker, a whole host and Redis fail for real, and nothing is left behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client import RpcClient
from tests.cluster import Cluster, node_of
from tests.test_cluster import BOB, LOST_WITHIN, listed, user

NO_SUCH_PROCESS = -32002


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    env = {
        "PROCWIRE_TOKENS": json.dumps([user("bob", BOB)]),
        "PROCWIRE_CLUSTER_HEARTBEAT": "1",
        "PROCWIRE_CLUSTER_NODE_TIMEOUT": "4",
    }
    with Cluster(tmp_path, env=env) as running:
        yield running


def elsewhere(cluster: Cluster, client: RpcClient) -> RpcClient:
    """A new connection through nginx on the other host (so on another worker too)."""
    return cluster.connect_to(cluster.other_host(cluster.host_of(node_of(client))))


def test_a_client_carries_on_with_its_processes_from_another_worker_and_host(cluster: Cluster) -> None:
    with cluster.connect() as first:
        cat = first.call("start", argv=["cat"], on_disconnect="keep")["proc"]
        shell = first.call("start", argv=["sh"], pty={"rows": 24, "cols": 80}, on_disconnect="keep")["proc"]
        first.call("write", proc=cat, data="0123456789\n")
        started_on = node_of(first)
        node_name = first.hello["params"]["node"]
    with elsewhere(cluster, first) as second, cluster.connect(BOB) as bob:
        assert node_of(second).port != started_on.port and node_of(second).pid != started_on.pid
        entry = listed(second, cat)
        assert entry is not None and entry["node"] == node_name

        assert second.call("write", proc=cat, data="more\n") == {"written": 5}
        attached = second.call("attach", proc=cat, offset={"stdout": 4})
        assert attached["replay_from"]["stdout"] == 4 and attached["truncated"] is False
        second.call("close_stdin", proc=cat)
        collected = second.collect(cat)
        assert bytes(collected.stdout) == b"456789\nmore\n"
        assert collected.exit["code"] == 0

        second.call("attach", proc=shell)
        assert second.call("resize", proc=shell, rows=40, cols=120) == {"size": {"rows": 40, "cols": 120}}
        second.call("write", proc=shell, data="stty size; exit 7\n")
        terminal = second.collect(shell)
        assert b"40 120" in bytes(terminal.stdout)
        assert second.call("wait", proc=shell)["code"] == 7

        assert all(entry["proc"] not in (cat, shell) for entry in bob.call("list")["processes"])
        assert bob.error_of("attach", proc=cat).code == NO_SUCH_PROCESS
        for proc in (cat, shell):
            second.call("release", proc=proc)


def test_a_host_that_vanishes_ends_its_processes_lost_everywhere_and_leaves_nothing(cluster: Cluster) -> None:
    with cluster.connect() as doomed_client:
        host = cluster.host_of(node_of(doomed_client))
        proc = doomed_client.call("start", argv=["sh", "-c", "echo up; sleep 300 & sleep 300"], on_disconnect="keep")
        with elsewhere(cluster, doomed_client) as survivor:
            survivor.call("attach", proc=proc["proc"])
            waiting = survivor.request("wait", {"proc": proc["proc"]})
            killed = cluster.kill_host(host)
            killed_at = time.monotonic()
            collected = survivor.collect(proc["proc"])
            assert time.monotonic() - killed_at <= LOST_WITHIN
            assert bytes(collected.stdout) == b"up\n"
            assert collected.exit["lost"] is True and collected.exit["node"] == doomed_client.hello["params"]["node"]
            assert survivor.response(waiting)["result"]["lost"] is True
            entry = listed(survivor, proc["proc"])
            assert entry is not None and entry["state"] == "exited"
    assert proc["pid"] in killed.processes
    assert cluster.leftovers(killed.processes) == []


def test_a_killed_worker_is_replaced_and_its_kept_processes_end_lost(cluster: Cluster) -> None:
    with cluster.connect() as client:
        worker = node_of(client).pid
        proc = client.call("start", argv=["sleep", "300"], on_disconnect="keep")["proc"]
        with elsewhere(cluster, client) as survivor:
            killed = cluster.kill_worker(worker)
            assert cluster.leftovers(killed.processes) == []
            status = survivor.call("wait", proc=proc)
            assert status["lost"] is True and status["code"] is None
            survivor.call("release", proc=proc)
            assert listed(survivor, proc) is None
