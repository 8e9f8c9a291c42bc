"""Resume across a worker restart (issue 13, item 3), for both Python clients.

A kept process dies with the worker that owns it when each worker keeps its
processes in memory, so a restart is survived the way the product supports:
cluster mode (tests/cluster.py: two hosts, two workers each, one real Redis).
The process runs on host A; the ``reconnect=True`` client follows it through
a connection straight to host B.  SIGKILLing the worker of B that serves the
client (its master starts another) drops the connection for real: the client
reconnects to B and resumes through Redis with exact bytes.  SIGKILLing the
worker that owns the process instead ends it ``lost`` (docs/scaling.md,
"Failures"), which the client reports as such rather than waiting for ever.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.client import RpcClient
from tests.client_kinds import BOUND, EXPECTED, WRITER, LoopThread, connect, read_until
from tests.cluster import Cluster, Node, node_of
from tests.server import Server, pid_exists, wait_until

KINDS = ["sync", "async", "js"]
# A lost node is declared within CLUSTER_NODE_TIMEOUT plus a heartbeat (shortened as in tests/test_cluster.py).
CLUSTER_ENV = {"PROCWIRE_CLUSTER_HEARTBEAT": "1", "PROCWIRE_CLUSTER_NODE_TIMEOUT": "4"}
# A request to a node waits CLUSTER_TIMEOUT: longer than that in `cluster`, so that an attach asking a dead
# owner learns it was lost; shorter in `impatient_cluster` (as with the defaults, 5 s against 6 + 2), so that
# it is told first that the owner did not answer (-32009), and a resuming client asks again.
PATIENT, IMPATIENT = "8", "2"
LOST_WITHIN = 10.0  # seconds: issue 10's bound for declaring a dead node's processes lost


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = dict(CLUSTER_ENV, PROCWIRE_CLUSTER_TIMEOUT=PATIENT)
    with Cluster(tmp_path_factory.mktemp("cluster"), env=env) as running:
        yield running


@pytest.fixture(scope="module")
def impatient_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = dict(CLUSTER_ENV, PROCWIRE_CLUSTER_TIMEOUT=IMPATIENT)
    with Cluster(tmp_path_factory.mktemp("impatient"), env=env) as running:
        yield running


@pytest.fixture
def clients(loop: LoopThread) -> Iterator[Any]:
    """Connects a client of a kind to a host (closed at the end)."""
    opened: list[Any] = []

    def make(kind: str, host: Server, **options: Any) -> Any:
        client = connect(kind, host.url, host.token, loop, **options)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


def start_kept(cluster: Cluster, host: Server, argv: list[str]) -> tuple[dict[str, Any], Node]:
    """Start a kept process through a connection to ``host`` that is closed at once; the start's
    answer and the node (worker) that runs it, once the other host sees it."""
    with RpcClient(host.url, host.token) as starter:
        started = starter.call("start", argv=argv, on_disconnect="keep")
        owner = node_of(starter)
    wait_listed(cluster.other_host(host), started["proc"])
    return started, owner


def wait_listed(host: Server, proc: int) -> None:
    """Until ``host`` lists ``proc``: its record reached Redis (up to 10 ms after its start)."""
    with RpcClient(host.url, host.token) as there:
        assert wait_until(lambda: proc in listed(there), BOUND), f"{proc} is not listed on {host.port}"


def served_by(client: Any) -> Node:
    return Node.parse(client.hello["node"])


def name_of(node: Node) -> str:
    return f"{node.hostname}:{node.port}:{node.pid}"


def listed(client: RpcClient) -> set[int]:
    return {entry["proc"] for entry in client.call("list")["processes"]}


@pytest.mark.parametrize("kind", KINDS)
def test_resume_through_the_cluster_after_the_connections_worker_is_killed(
    cluster: Cluster, clients: Any, kind: str
) -> None:
    a, b = cluster.hosts
    started, _ = start_kept(cluster, a, ["sh", "-c", WRITER])
    client = clients(kind, b, reconnect=True)
    first = served_by(client)
    process = client.attach(started["proc"], {"stdout": 0, "stderr": 0}, binary=True)
    received = {"stdout": b"", "stderr": b""}
    for stream, data in process.iter_output(4 * BOUND):
        received[stream] += data
        if client.reconnects == 0 and len(received["stdout"]) > len(EXPECTED["stdout"]) // 2:
            cluster.kill_worker(first.pid)  # returns once B's master has replaced it
            assert wait_until(lambda: client.reconnects == 1, BOUND)
    assert received == EXPECTED  # no byte lost, none repeated across the restart
    assert process.wait(BOUND).ok
    again = served_by(client)
    assert again.port == b.port and again.pid != first.pid
    assert client.ping() > 0
    client.release(started["proc"])


@pytest.mark.parametrize("kind", KINDS)
def test_a_killed_owner_ends_a_process_followed_from_another_host_lost(
    cluster: Cluster, clients: Any, kind: str
) -> None:
    a, b = cluster.hosts
    started, owner = start_kept(cluster, a, ["sh", "-c", "echo ready; sleep 60"])
    client = clients(kind, b, reconnect=True)
    process = client.attach(started["proc"])
    read_until(process, b"ready\n")
    cluster.kill_worker(owner.pid)
    status = process.wait(LOST_WITHIN + BOUND)
    assert status.lost and status.node == name_of(owner)
    assert status.code is None and status.signal is None
    assert client.reconnects == 0  # its own connection was never cut
    assert wait_until(lambda: not pid_exists(started["pid"]), BOUND)
    client.release(started["proc"])


@pytest.mark.parametrize("which", ["cluster", "impatient_cluster"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_killed_owner_that_served_the_client_too_ends_the_process_lost(
    request: pytest.FixtureRequest, clients: Any, kind: str, which: str
) -> None:
    """The resume asks the dead owner; it answers the lost exit once the owner is declared lost
    (``cluster``), or -32009 before that (``impatient_cluster``): the client then asks again."""
    cluster: Cluster = request.getfixturevalue(which)
    a, b = cluster.hosts
    client = clients(kind, a, reconnect=True)
    owner = served_by(client)
    process = client.start(["sh", "-c", "echo ready; sleep 60"], on_disconnect="keep")
    read_until(process, b"ready\n")
    wait_listed(b, process.proc)
    cluster.kill_worker(owner.pid)  # the connection and the process's node die together
    status = process.wait(LOST_WITHIN + BOUND)
    assert status.lost and status.node == name_of(owner)
    assert client.reconnects == 1 and served_by(client).pid != owner.pid
    assert wait_until(lambda: not pid_exists(process.pid), BOUND)
    client.release(process.proc)


def test_an_attach_waiting_on_a_dead_owner_answers_with_the_lost_exit(cluster: Cluster) -> None:
    """The server side of the case above: an ``attach`` asks the owner for exact offsets; when the
    owner is declared lost before it answers, the attach replays what Redis holds and ends with the
    lost exit (it used to fail with -32009 "node ... was lost")."""
    a, b = cluster.hosts
    started, owner = start_kept(cluster, a, ["sh", "-c", "echo ready; sleep 60"])
    with RpcClient(b.url, b.token, timeout=LOST_WITHIN + BOUND) as there:
        cluster.kill_worker(owner.pid)  # returns before the owner is declared lost
        answer = there.call("attach", proc=started["proc"])
        collected = there.collect(started["proc"])
        assert answer["state"] == "exited" and bytes(collected.stdout) == b"ready\n"
        assert collected.exit["lost"] is True and collected.exit["node"] == name_of(owner)
        there.call("release", proc=started["proc"])


@pytest.mark.parametrize("which", ["cluster", "impatient_cluster"])
def test_nothing_is_left_on_the_cluster(request: pytest.FixtureRequest, which: str) -> None:
    """Every process these tests started ended, on every node."""
    cluster: Cluster = request.getfixturevalue(which)
    with cluster.connect() as admin:
        running = [entry for entry in admin.call("list")["processes"] if entry["state"] == "running"]
    assert running == []
