"""Cluster mode (issue 10): two procwire servers sharing one real Redis.

Each server is its own gunicorn master ("host") on its own port; a process
started through one is listed, driven, attached to and waited for through
the other, and each failure (a worker SIGKILLed, Redis restarted empty) is
provoked for real.  The two-host deployment behind nginx with two workers
each is tests/test_cluster_nginx.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websocket

from tests.client import RpcClient, RpcFailure, read_close, start_bursts
from tests.redis_server import RedisServer
from tests.server import Server, children_of, pid_exists, wait_until
from tests.test_size_rule import BOUND, expect, resized, shell, shown

ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789"
CLUSTER_UNAVAILABLE = -32009
NO_SUCH_PROCESS = -32002
LOST_WITHIN = 10.0  # seconds: the heartbeat bound of issue 10
BACK_WITHIN = 20.0  # seconds: re-registration after Redis comes back


def user(name: str, token: str, **policy: object) -> dict[str, object]:
    rules = {"allow": ["/usr/bin/*", "/bin/*"], "cwd_roots": ["/"], "keep": True, "pty": True, **policy}
    return {"name": name, "role": "user", "sha256": hashlib.sha256(token.encode()).hexdigest(), "policy": rules}


def cluster_env(redis: RedisServer, state: Path, **extra: str) -> dict[str, str]:
    tokens = [user("alice", ALICE, max_procs=3), user("bob", BOB)]
    return {
        "PROCWIRE_REDIS_URL": redis.url,
        "PROCWIRE_STATE_DIR": str(state),
        "PROCWIRE_TOKENS": json.dumps(tokens),
        "PROCWIRE_KILL_GRACE": "1",
        "PROCWIRE_CLUSTER_HEARTBEAT": "1",
        "PROCWIRE_CLUSTER_NODE_TIMEOUT": "4",
        **extra,
    }


@dataclass
class Pair:
    """Two hosts of one cluster."""

    redis: RedisServer
    a: Server
    b: Server

    def connect(self, server: Server, token: str | None = None) -> RpcClient:
        return RpcClient(server.url, token or server.token)

    def stop(self) -> None:
        for server in (self.a, self.b):
            server.stop()


def start_pair(redis: RedisServer, state: Path, **extra: str) -> Pair:
    env = cluster_env(redis, state, **extra)
    a = Server(env=env).start()
    try:
        b = Server(env=env).start()
    except BaseException:
        a.stop()
        raise
    return Pair(redis, a, b)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pair(redis: RedisServer, tmp_path: Path) -> Iterator[Pair]:
    started = start_pair(redis, tmp_path)
    try:
        yield started
    finally:
        started.stop()


def listed(client: RpcClient, proc: int) -> dict[str, object] | None:
    return next((entry for entry in client.call("list")["processes"] if entry["proc"] == proc), None)


def eventually_listed(client: RpcClient, proc: int, timeout: float = 1.0) -> dict[str, object]:
    """Issue 10: visible on every node within 1 s of its ``start`` being answered."""
    assert wait_until(lambda: listed(client, proc) is not None, timeout=timeout), f"{proc} not listed in {timeout} s"
    entry = listed(client, proc)
    assert entry is not None
    return entry


def answers(client: RpcClient, method: str, **params: Any) -> bool:
    """Whether ``method`` succeeds now (for polling until the cluster is back)."""
    try:
        client.call(method, **params)
    except RpcFailure:
        return False
    return True


def node_of(client: RpcClient) -> str:
    return client.hello["params"]["node"]


def http(server: Server, method: str, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        server.http + path, method=method, headers={"Authorization": f"Bearer {server.token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def upgrade_status(server: Server, token: str) -> int:
    """The HTTP status of a WebSocket upgrade: 101, or the refusal's."""
    try:
        websocket.create_connection(f"{server.url}?token={token}", timeout=5).close()
    except websocket.WebSocketBadStatusException as refused:
        return refused.status_code
    return 101


# -- one process, two nodes ------------------------------------------------------------------------


def test_a_kept_process_is_listed_driven_attached_and_waited_for_from_another_host(pair: Pair) -> None:
    with pair.connect(pair.a) as here, pair.connect(pair.b) as there:
        assert node_of(here) != node_of(there)
        started = here.call("start", argv=["cat"], on_disconnect="keep")
        proc = started["proc"]
        assert here.call("write", proc=proc, data="hello\n") == {"written": 6}

        entry = eventually_listed(there, proc)
        assert entry["node"] == node_of(here)
        assert entry["pid"] == started["pid"] and entry["owner"] == "default" and entry["state"] == "running"
        assert there.call("find", pid=started["pid"])["proc"] == proc

        assert there.call("write", proc=proc, data="from b\n") == {"written": 7}
        attached = there.call("attach", proc=proc, offset={"stdout": 2})
        assert attached["replay_from"] == {"stdout": 2, "stderr": 0} and attached["truncated"] is False
        assert there.call("close_stdin", proc=proc) == {}
        collected = there.collect(proc)
        assert bytes(collected.stdout) == b"llo\nfrom b\n"  # the replay from offset 2, then live, bytes exact
        assert collected.exit["code"] == 0
        assert there.call("wait", proc=proc)["code"] == 0

        assert wait_until(lambda: listed(here, proc)["state"] == "exited", timeout=1.0)  # type: ignore[index]
        assert there.call("release", proc=proc) == {}
        assert wait_until(lambda: listed(here, proc) is None and listed(there, proc) is None, timeout=2.0)


def test_a_second_token_sees_none_of_another_tokens_processes(pair: Pair) -> None:
    with pair.connect(pair.a, ALICE) as alice, pair.connect(pair.b, BOB) as bob, pair.connect(pair.b) as admin:
        proc = alice.call("start", argv=["sleep", "30"], on_disconnect="keep")["proc"]
        eventually_listed(admin, proc)  # admins see every token's processes
        assert listed(bob, proc) is None
        for method, params in (("write", {"data": "x"}), ("signal", {"signal": "TERM"}), ("attach", {})):
            assert bob.error_of(method, proc=proc, **params).code == NO_SUCH_PROCESS
        alice.call("kill", proc=proc)
        assert alice.call("wait", proc=proc)["signal"] == "SIGKILL"
        alice.call("release", proc=proc)


def test_the_rule_holds_when_a_controller_is_on_another_host(pair: Pair) -> None:
    """The owner node applies the rule: a remote resize names its connection, a remote
    disconnect makes its size stop counting, and ``find`` on either host shows the size."""
    with pair.connect(pair.a) as here, pair.connect(pair.b) as there:
        started = shell(here, 40, 120, size_rule="smallest")
        proc = started["proc"]
        eventually_listed(there, proc)
        there.call("attach", proc=proc)
        assert resized(there, proc, 30, 150) == {"rows": 30, "cols": 120}
        expect(here, started, 30, 120)
        assert shown(there, started["pid"]) == {"rows": 30, "cols": 120}
        there.close()
        assert wait_until(lambda: shown(here, started["pid"]) == {"rows": 40, "cols": 120}, timeout=BOUND)
        expect(here, started, 40, 120)
        here.call("kill", proc=proc)
        assert here.call("wait", proc=proc, timeout=BOUND)["signal"] == "SIGKILL"


def test_signal_stop_and_resize_act_on_a_process_of_another_host(pair: Pair) -> None:
    with pair.connect(pair.a) as here, pair.connect(pair.b) as there:
        shell = here.call("start", argv=["sh"], pty={"rows": 24, "cols": 80}, on_disconnect="keep")["proc"]
        eventually_listed(there, shell)
        there.call("attach", proc=shell)
        assert there.call("resize", proc=shell, rows=33, cols=101) == {"size": {"rows": 33, "cols": 101}}
        there.call("write", proc=shell, data="stty size; exit\n")
        collected = there.collect(shell)
        assert b"33 101" in bytes(collected.stdout)

        sleeper = here.call("start", argv=["sleep", "30"], on_disconnect="keep")["proc"]
        eventually_listed(there, sleeper)
        assert there.call("signal", proc=sleeper, signal="STOP") == {}
        stopped = there.call("stop", proc=sleeper, grace=0.5)
        assert stopped["signal"] in ("SIGTERM", "SIGKILL")
        assert there.error_of("signal", proc=sleeper, signal="TERM").code == -32005  # exited


def test_binary_output_frames_carry_cluster_ids(pair: Pair) -> None:
    """Ids fit the 32 bits of a binary frame's header, locally and from another host."""
    with pair.connect(pair.a) as here, pair.connect(pair.b) as there:
        assert bytes(here.run_to_exit(["echo", "binary"], binary=True).stdout) == b"binary\n"
        proc = here.call("start", argv=["cat"], binary=True, on_disconnect="keep")["proc"]
        assert proc < 2**32
        here.call("write", proc=proc, data="far\n")
        eventually_listed(there, proc)
        there.call("attach", proc=proc)
        there.call("close_stdin", proc=proc)
        collected = there.collect(proc)
        assert bytes(collected.stdout) == b"far\n" and collected.binary_frames >= 1


def test_proc_ids_are_unique_across_hosts_and_never_reused_after_redis_loses_its_data(pair: Pair) -> None:
    with pair.connect(pair.a) as here, pair.connect(pair.b) as there:
        first = [client.call("run", argv=["true"])["proc"] for client in (here, there, here, there)]
    assert len(set(first)) == 4
    pair.a.stop()
    pair.redis.restart()  # empty: the id counter is gone
    pair.a.start()  # a host restarting onto the same Redis takes a new block
    with pair.connect(pair.a) as here, pair.connect(pair.b) as there:
        later = [client.call("run", argv=["true"])["proc"] for client in (here, there, here)]
    assert len(set(first + later)) == 7
    assert min(later[0], later[2]) > max(first)  # the restarted host's block is above all before


def test_the_http_api_covers_the_cluster_and_closes_a_connection_on_another_host(pair: Pair) -> None:
    with pair.connect(pair.a) as here, pair.connect(pair.b) as there:
        proc = here.call("start", argv=["sleep", "30"], on_disconnect="keep")["proc"]
        eventually_listed(there, proc)
        processes = http(pair.b, "GET", "/api/processes")[1]["processes"]
        assert [entry["node"] for entry in processes if entry["proc"] == proc] == [node_of(here)]
        clients = {entry["id"]: entry for entry in http(pair.b, "GET", "/api/clients")[1]["clients"]}
        far_client = here.hello["params"]["client_id"]
        assert clients[far_client]["node"] == node_of(here)
        assert http(pair.b, "DELETE", f"/api/clients/{far_client}") == (200, {"closed": far_client})
        assert read_close(here.ws, timeout=5.0)[0] == 4000
        assert http(pair.b, "DELETE", f"/api/clients/{far_client}")[0] == 404
        there.call("kill", proc=proc)
        there.call("wait", proc=proc)


def test_per_token_limits_count_every_host(redis: RedisServer, tmp_path: Path) -> None:
    pair = start_pair(redis, tmp_path, PROCWIRE_MAX_CONNECTIONS_PER_TOKEN="2")
    try:
        with pair.connect(pair.a, ALICE) as first, pair.connect(pair.a, ALICE) as second:
            time.sleep(0.3)  # the writer's pipeline: the other host reads the count from Redis
            assert upgrade_status(pair.b, ALICE) == 429
            started = [first.call("start", argv=["sleep", "30"])["proc"] for _ in range(3)]  # max_procs = 3
            time.sleep(0.3)
            assert second.error_of("start", argv=["sleep", "30"]).code == -32004
            for proc in started:
                first.call("kill", proc=proc)
    finally:
        pair.stop()


def test_a_per_token_cap_holds_under_concurrent_starts_on_one_node(pair: Pair) -> None:
    """Counting the other nodes takes a Redis round trip: it must not open a window
    in which concurrent starts on this node pass the cap together (max_procs = 3)."""
    connections = [pair.connect(pair.a, ALICE) for _ in range(10)]
    try:
        answers = start_bursts(connections, {"argv": ["sleep", "30"]})
        assert len(answers) == 50
        assert len([answer for answer in answers if "result" in answer]) == 3, answers
    finally:
        for client in connections:
            client.close()


# -- failures --------------------------------------------------------------------------------------


def test_a_sigkilled_workers_processes_end_lost_on_every_host(pair: Pair) -> None:
    with pair.connect(pair.a) as here, pair.connect(pair.b) as there:
        proc = here.call("start", argv=["cat"], on_disconnect="keep")
        here.call("write", proc=proc["proc"], data="before\n")
        eventually_listed(there, proc["proc"])
        there.call("attach", proc=proc["proc"])
        waiting = there.request("wait", {"proc": proc["proc"]})
        worker = pair.a.worker_pids()[0]
        os.kill(worker, signal.SIGKILL)
        killed_at = time.monotonic()

        collected = there.collect(proc["proc"])
        assert time.monotonic() - killed_at <= LOST_WITHIN
        assert bytes(collected.stdout) == b"before\n"
        assert collected.exit["lost"] is True and collected.exit["node"] == node_of(here)
        assert collected.exit["code"] is None and collected.exit["signal"] is None
        assert there.response(waiting)["result"]["lost"] is True
        entry = listed(there, proc["proc"])
        assert entry is not None and entry["state"] == "exited" and entry["exit"]["lost"] is True
        assert wait_until(lambda: not pid_exists(proc["pid"]), timeout=5.0)


def test_a_host_stopped_gracefully_reports_the_real_exits_of_its_kept_processes(pair: Pair) -> None:
    with pair.connect(pair.a) as here, pair.connect(pair.b) as there:
        proc = here.call("start", argv=["sleep", "300"], on_disconnect="keep")["proc"]
        eventually_listed(there, proc)
        waiting = there.request("wait", {"proc": proc})
        pair.a.stop()  # SIGTERM: sessions closed with 1001, kept processes stopped
        status = there.response(waiting)["result"]
        assert status["signal"] == "SIGTERM" and "lost" not in status
        assert listed(there, proc)["exit"] == status  # type: ignore[index]


def test_redis_down_leaves_local_work_alone_and_remote_work_comes_back(pair: Pair) -> None:
    with pair.connect(pair.a) as here, pair.connect(pair.b) as there:
        proc = here.call("start", argv=["cat"], on_disconnect="keep")["proc"]
        eventually_listed(there, proc)
        pair.redis.stop()

        assert here.run_to_exit(["echo", "still here"]).stdout == b"still here\n"  # start included
        assert here.call("write", proc=proc, data="local\n") == {"written": 6}
        asked = time.monotonic()
        assert there.error_of("write", proc=proc, data="x").code == CLUSTER_UNAVAILABLE
        assert time.monotonic() - asked <= 10.0
        assert there.call("list")["partial"] is True

        pair.redis.start()  # empty
        assert wait_until(lambda: listed(there, proc) is not None, timeout=BACK_WITHIN)
        assert there.call("write", proc=proc, data="remote\n") == {"written": 7}
        there.call("attach", proc=proc)
        there.call("close_stdin", proc=proc)
        assert bytes(there.collect(proc).stdout).endswith(b"remote\n")


def test_a_frozen_redis_makes_remote_work_fail_in_time_and_leaves_local_work_alone(pair: Pair) -> None:
    """Redis stopped (SIGSTOP): connections hang rather than being refused."""
    with pair.connect(pair.a) as here, pair.connect(pair.b) as there:
        proc = here.call("start", argv=["cat"], on_disconnect="keep")["proc"]
        eventually_listed(there, proc)
        there.call("list")  # the lookup below is answered from Redis, not from a warm cache
        pair.redis.freeze()
        try:
            asked = time.monotonic()
            assert there.error_of("signal", proc=proc, signal="TERM").code == CLUSTER_UNAVAILABLE
            assert time.monotonic() - asked <= 10.0
            assert http(pair.b, "DELETE", "/api/clients/0123456789abcdef")[0] == 503  # it may be on another node
            assert here.run_to_exit(["echo", "local"]).stdout == b"local\n"
            assert here.call("write", proc=proc, data="x\n") == {"written": 2}
        finally:
            pair.redis.thaw()
        assert wait_until(lambda: answers(there, "write", proc=proc, data="y\n"), timeout=BACK_WITHIN)
        here.call("kill", proc=proc)


def test_no_process_is_left_behind_by_the_cluster_tests(pair: Pair) -> None:
    """The leftovers check the session fixture makes for the default server, for these servers."""
    with pair.connect(pair.a) as here:
        proc = here.call("start", argv=["sleep", "30"])["proc"]
        here.call("kill", proc=proc)
        here.call("wait", proc=proc)
    for server in (pair.a, pair.b):
        for worker in server.worker_pids():
            assert wait_until(lambda worker=worker: children_of(worker) == [], timeout=5.0), children_of(worker)
