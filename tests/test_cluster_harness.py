"""The cluster tests' deployment itself (tests/cluster.py, tests/redis_server.py).

Nothing here relies on what the cluster mode does with Redis: the two hosts
serve through nginx, every worker can be reached, failures are provoked on
the right pids and leave nothing behind, Redis restarts empty.  Also what
lets two servers share one machine (gunicorn.conf.py): no shared path, and
connections spread over the workers by the kernel.
"""

from __future__ import annotations

import collections
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import websocket

from tests.client import RpcClient
from tests.cluster import WORKERS_PER_HOST, Cluster, Node, descendants, metrics_directories, node_of, workers_of
from tests.redis_server import RedisServer
from tests.server import Server, pid_exists
from tests.test_deploy import gunicorn_config

SPREAD_CONNECTIONS = 100


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for the tests that leave it as they found it."""
    with Cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


def echo(client: RpcClient, text: str) -> bytes:
    return bytes(client.run_to_exit(["echo", text]).stdout)


# -- reaching every node ---------------------------------------------------------------


def test_both_masters_serve_through_nginx(cluster: Cluster) -> None:
    for host in cluster.hosts:
        with cluster.connect_to(host) as client:
            assert cluster.host_of(node_of(client)) is host
            assert echo(client, "hi") == b"hi\n"


def test_connections_reach_all_four_workers(cluster: Cluster) -> None:
    workers = cluster.workers()
    assert len(set(workers)) == 2 * WORKERS_PER_HOST
    for host in cluster.hosts:
        for worker in workers_of(host):
            with cluster.connect_to(host, worker) as client:
                assert node_of(client) == Node(socket.gethostname(), host.port, worker)
                assert echo(client, str(worker)) == f"{worker}\n".encode()


def test_both_hosts_use_the_one_redis(cluster: Cluster) -> None:
    for host in cluster.hosts:
        assert host.env["PROCWIRE_REDIS_URL"] == cluster.redis.url


# -- two servers on one machine (gunicorn.conf.py) -------------------------------------


def resolved(host: Server) -> dict[str, str]:
    """gunicorn's settings for this host, as its master resolved them."""
    return gunicorn_config(["-c", "gunicorn.conf.py"], {**host.env, "PROCWIRE_BIND": f"127.0.0.1:{host.port}"})


def test_two_servers_share_no_control_socket_and_no_metrics_directory(cluster: Cluster) -> None:
    sockets = {resolved(host)["control_socket"] for host in cluster.hosts}
    assert len(sockets) == len(cluster.hosts)
    directories = set()
    for host in cluster.hosts:
        with cluster.connect_to(host) as client:  # a child gets the server's environment
            directories.add(bytes(client.run_to_exit(["printenv", "PROMETHEUS_MULTIPROC_DIR"]).stdout).strip())
    assert len(directories) == len(cluster.hosts)
    assert all(Path(directory.decode()).is_dir() for directory in directories)


def test_reuse_port_only_with_several_workers_on_tcp() -> None:
    def reuse_port(bind: str, workers: int) -> str:
        env = {"PROCWIRE_BIND": bind, "PROCWIRE_WORKERS": str(workers)}
        return gunicorn_config(["-c", "gunicorn.conf.py"], env)["reuse_port"]

    assert reuse_port("127.0.0.1:9999", 2) == "True"
    assert reuse_port("127.0.0.1:9999", 1) == "False"
    assert reuse_port("unix:/run/procwire/gunicorn.sock", 2) == "False"  # workers would replace each other's file


def listening_inodes(port: int) -> set[str]:
    """The inodes of the TCP sockets listening on 127.0.0.1:``port``."""
    wanted = f"0100007F:{port:04X}"
    rows = (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
    return {row[9] for row in rows if row[1] == wanted and row[3] == "0A"}


def socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            match = re.fullmatch(r"socket:\[(\d+)\]", str(fd.readlink()))
        except OSError:
            continue
        if match:
            found.add(match[1])
    return found


def test_each_worker_listens_on_a_socket_of_its_own(cluster: Cluster) -> None:
    for host in cluster.hosts:
        assert host.process is not None
        listening = listening_inodes(host.port)
        held = [socket_inodes(worker) & listening for worker in workers_of(host)]
        assert [len(inodes) for inodes in held] == [1] * WORKERS_PER_HOST
        assert len(set().union(*held)) == WORKERS_PER_HOST
        assert not socket_inodes(host.process.pid) & listening  # the master holds none


def test_the_kernel_spreads_connections_over_the_workers(cluster: Cluster) -> None:
    """reuse_port: each worker takes its share by the kernel's hash.  Measured
    with 200 connections: 112/88 at worst in 10 runs, against 135/65 on one
    shared socket (docs/deploy.md).  A quarter is far from any chance result."""
    host = cluster.hosts[0]
    clients: list[RpcClient] = []
    try:
        for _ in range(SPREAD_CONNECTIONS):
            clients.append(RpcClient(host.url, host.token))  # straight to the host: no nginx
        per_worker = collections.Counter(node_of(client).pid for client in clients)
    finally:
        for client in clients:
            client.close()
    assert sorted(per_worker) == sorted(workers_of(host))
    assert min(per_worker.values()) >= SPREAD_CONNECTIONS // 4, per_worker


# -- failures --------------------------------------------------------------------------


def test_a_killed_worker_is_replaced_and_its_processes_end(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        host = cluster.hosts[0]
        victim, survivor = workers_of(host)
        client = cluster.connect_to(host, victim)
        pid = client.call("start", argv=["sleep", "1000"])["pid"]
        killed = cluster.kill_worker(victim)
        assert pid in killed.processes
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
            client.call("ping")
        client.close()
        assert cluster.leftovers(killed.processes) == []  # the master's child_exit
        (replacement,) = set(workers_of(host)) - {survivor}
        assert replacement != victim
        with cluster.connect_to(host, replacement) as again:
            assert echo(again, "back") == b"back\n"


def test_a_killed_host_leaves_no_pid_the_other_serves_and_it_comes_back(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        dead, alive = cluster.hosts
        assert dead.process is not None
        with cluster.connect_to(dead) as client:
            killed = cluster.kill_host(dead)
            assert killed.master == dead.process.pid
            assert len(set(killed.workers)) == WORKERS_PER_HOST
            with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
                client.call("ping")
        assert cluster.leftovers([dead.process.pid, *killed.workers], timeout=5) == []
        assert metrics_directories(killed.workers) == set()
        for _ in range(6):  # nginx passes over the dead one
            with cluster.connect() as client:
                assert cluster.host_of(node_of(client)) is alive
        revived = cluster.revive_host(dead)
        with cluster.connect_to(revived) as client:
            assert echo(client, "back") == b"back\n"
        assert cluster.nginx is not None and cluster.nginx.process is not None
        started = [cluster.redis.process, cluster.nginx.process, *(host.process for host in cluster.hosts)]
        pids = [process.pid for process in started if process is not None]
        pids += [child for pid in pids for child in descendants(pid)]
    assert [pid for pid in pids if pid_exists(pid)] == []


# -- Redis -----------------------------------------------------------------------------


def test_redis_restarts_empty_on_the_same_port(redis_server: RedisServer) -> None:
    redis_server.client().set("key", "value")
    port, pid = redis_server.port, redis_server.pid
    redis_server.restart()
    assert (redis_server.port, redis_server.client().get("key")) == (port, None)
    assert redis_server.pid != pid and pid is not None and not pid_exists(pid)


def test_a_frozen_redis_answers_nothing_until_thawed(redis_server: RedisServer) -> None:
    redis_server.freeze()
    try:
        with pytest.raises(redis.TimeoutError):
            redis_server.client(socket_timeout=0.5).ping()
    finally:
        redis_server.thaw()
    assert redis_server.client().ping()


def test_a_stopped_redis_refuses_then_starts_again_empty(redis_server: RedisServer) -> None:
    redis_server.client().set("key", "value")
    redis_server.stop()
    with pytest.raises(redis.ConnectionError):
        redis_server.client().ping()
    redis_server.start()
    assert redis_server.client().get("key") is None
