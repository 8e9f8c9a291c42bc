"""Two procwire "hosts" sharing one real Redis behind one nginx: the cluster tests' deployment.

Each host is a gunicorn master of its own (tests/server.py) on its own
loopback port with ``WORKERS=2``; both have ``REDIS_URL`` set to the same
redis-server (tests/redis_server.py) and are the two servers of one nginx
upstream rendered from deploy/nginx.conf (tests/nginx.py).  A connection
through nginx lands on either host (round robin) and on either of its workers
(the kernel spreads them: ``reuse_port``); ``hello`` names the node serving
it, ``<hostname>:<master port>:<worker pid>``.

Failures are provoked for real, and only on pids the harness started: one
worker SIGKILLed (its master replaces it), a host's master and workers
SIGKILLed at once (their process group: what procwire started leads groups of
its own and is left to procwire), Redis stopped, frozen or restarted empty.

While a cluster runs, the test process is a child subreaper: the workers of
a killed host, and whatever they leave behind, are reparented here rather
than to pid 1 (which, in a container, may never reap them) and are reaped
here, so a process that outlived its host shows as alive and a dead one
never hides behind a zombie.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.client import RpcClient
from tests.nginx import Nginx, render_nginx_conf
from tests.redis_server import RedisServer
from tests.server import Server, children_of, pid_exists, wait_until

HOSTS = 2
WORKERS_PER_HOST = 2
BASE_ENV = {"PROCWIRE_WORKERS": str(WORKERS_PER_HOST), "PROCWIRE_PROXY_COUNT": "1", "PROCWIRE_KILL_GRACE": "1"}
LAND_TIMEOUT = 20.0  # seconds to land on a given node
WORKER_TIMEOUT = 20.0  # seconds for a master to replace a killed worker
NGINX_FAIL_TIMEOUT = "1s"
PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Node:
    """Who serves a connection, from hello's ``node``."""

    hostname: str
    port: int  # the master's port: which host
    pid: int  # the worker

    @classmethod
    def parse(cls, name: str) -> Node:
        hostname, port, pid = name.rsplit(":", 2)
        return cls(hostname, int(port), int(pid))


def node_of(client: RpcClient) -> Node:
    return Node.parse(client.hello["params"]["node"])


@dataclass
class Killed:
    """What was SIGKILLed, and what it had started then: for checking that nothing outlives it."""

    master: int | None  # None when only a worker was killed
    workers: list[int]
    processes: list[int]  # everything the workers had started, grandchildren included


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    pending = [pid]
    while pending:
        children = children_of(pending.pop())
        found += children
        pending += children
    return found


def workers_of(host: Server) -> list[int]:
    """The master's children in its process group: its workers.  Processes
    it adopted from a dead worker lead groups of their own."""
    if host.process is None or host.process.poll() is not None:
        return []
    master = host.process.pid
    return [pid for pid in children_of(master) if _process_group(pid) == master]


def metrics_directories(workers: list[int]) -> set[Path]:
    """The metrics directory gunicorn.conf.py made for these workers' master,
    found by the files they write into it."""
    found = Path(tempfile.gettempdir()).glob("procwire-metrics-*/*.db")
    return {path.parent for path in found if path.stem.rpartition("_")[2] in {str(pid) for pid in workers}}


def wait_until_serving(host: Server, worker: int) -> None:
    """Connect straight to ``host`` until ``worker`` answers one: then it has
    booted.  A worker still booting loses a SIGTERM (it has no handler of its
    own yet), and its master would wait GRACEFUL_TIMEOUT on a stop."""
    deadline = time.monotonic() + WORKER_TIMEOUT
    while time.monotonic() < deadline:
        with RpcClient(host.url, host.token, timeout=WORKER_TIMEOUT) as client:
            if node_of(client).pid == worker:
                return
    raise AssertionError(f"worker {worker} of host {host.port} answered no connection in {WORKER_TIMEOUT} s")


def _process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


class _Subreaper:
    """PR_SET_CHILD_SUBREAPER for this process while at least one cluster runs."""

    holders = 0

    @classmethod
    def acquire(cls) -> None:
        if cls.holders == 0:
            cls._set(1)
        cls.holders += 1

    @classmethod
    def release(cls) -> None:
        cls.holders -= 1
        if cls.holders == 0:
            cls._set(0)

    @staticmethod
    def _set(value: int) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, value, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


@dataclass
class Cluster:
    """Redis, two hosts and nginx, started by ``start`` and all stopped by ``stop``."""

    directory: Path  # nginx's files
    env: dict[str, str] = field(default_factory=dict)  # more settings for both hosts
    token: str = "test-token"
    redis: RedisServer = field(default_factory=RedisServer)
    hosts: list[Server] = field(default_factory=list)
    nginx: Nginx | None = None
    adopted: set[int] = field(default_factory=set)  # pids of killed hosts' trees, reaped here
    subreaper: bool = False  # this cluster holds _Subreaper

    # -- start and stop -------------------------------------------------------------------

    def host_env(self) -> dict[str, str]:
        state = {"PROCWIRE_STATE_DIR": str(self.directory / "state")}  # the hosts' id marks (app/cluster/ids.py)
        return {**BASE_ENV, "PROCWIRE_REDIS_URL": self.redis.url, **state, **self.env}

    def start(self) -> Cluster:
        _Subreaper.acquire()
        self.subreaper = True
        try:
            self.redis.start()
            for _ in range(HOSTS):
                self.hosts.append(Server(env=self.host_env(), token=self.token))
                self._start_host(self.hosts[-1])
            self.nginx = Nginx(self.directory)
            # After a failure nginx passes over a server for fail_timeout (10 s by
            # default): shortened, so that a revived host is reached again soon.
            upstream = [f"127.0.0.1:{host.port} fail_timeout={NGINX_FAIL_TIMEOUT}" for host in self.hosts]
            self.nginx.start(
                render_nginx_conf(self.directory, listen=f"127.0.0.1:{self.nginx.port}", upstream=upstream)
            )
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _start_host(host: Server) -> None:
        host.start()
        if not wait_until(lambda: len(workers_of(host)) == WORKERS_PER_HOST, WORKER_TIMEOUT):
            raise RuntimeError(f"host {host.port}: workers {workers_of(host)}, expected {WORKERS_PER_HOST}")
        for worker in workers_of(host):
            wait_until_serving(host, worker)

    def stop(self) -> None:
        """nginx, the hosts, Redis; then whatever killed hosts left here is reaped."""
        try:
            if self.nginx is not None:
                self.nginx.stop()
            for host in self.hosts:
                host.stop()
            self.redis.stop()
            self.reap()
        finally:
            if self.subreaper:
                _Subreaper.release()
                self.subreaper = False

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- connections ----------------------------------------------------------------------

    def connect(self, token: str | None = None, **options: Any) -> RpcClient:
        """A connection through nginx, to whichever node it picks."""
        assert self.nginx is not None
        return RpcClient(self.nginx.url, token or self.token, **options)

    def connect_to(
        self, host: Server | None = None, worker: int | None = None, token: str | None = None, **options: Any
    ) -> RpcClient:
        """Reconnect through nginx, as a client would, until a connection lands
        on ``host`` (and on its ``worker``); the others are closed at once."""
        seen: Counter[Node] = Counter()
        deadline = time.monotonic() + LAND_TIMEOUT
        while time.monotonic() < deadline:
            client = self.connect(token, **options)
            node = node_of(client)
            if (host is None or node.port == host.port) and (worker is None or node.pid == worker):
                return client
            client.close()
            seen[node] += 1
            time.sleep(0.01)
        wanted = f"host {host.port if host else 'any'}, worker {worker or 'any'}"
        raise AssertionError(f"no connection landed on {wanted} in {LAND_TIMEOUT} s; landed on {dict(seen)}")

    def host_of(self, node: Node) -> Server:
        (host,) = [host for host in self.hosts if host.port == node.port]
        return host

    def other_host(self, host: Server) -> Server:
        (other,) = [candidate for candidate in self.hosts if candidate is not host]
        return other

    def workers(self) -> list[int]:
        return [pid for host in self.hosts for pid in workers_of(host)]

    # -- failures -------------------------------------------------------------------------

    def kill_worker(self, pid: int) -> Killed:
        """SIGKILL one worker; its master reaps it and starts another."""
        (host,) = [host for host in self.hosts if pid in workers_of(host)]
        killed = Killed(None, [pid], descendants(pid))
        os.kill(pid, signal.SIGKILL)
        replaced = wait_until(lambda: not pid_exists(pid) and len(workers_of(host)) == WORKERS_PER_HOST, WORKER_TIMEOUT)
        assert replaced, f"worker {pid} not replaced: {workers_of(host)}"
        for worker in workers_of(host):
            wait_until_serving(host, worker)
        return killed

    def kill_host(self, host: Server) -> Killed:
        """SIGKILL a master and its workers at once: their process group,
        which is the master's pid (tests/server.py starts it in a session of
        its own).  What the workers started leads groups of its own and is
        left for procwire to end; it is reaped here as it does."""
        assert host.process is not None and host.process.poll() is None
        master = host.process.pid
        workers = workers_of(host)
        killed = Killed(master, workers, [pid for worker in workers for pid in descendants(worker)])
        self.adopted.update(killed.workers + killed.processes)
        metrics = metrics_directories(workers)
        os.killpg(master, signal.SIGKILL)
        host.process.wait(timeout=10)
        for directory in metrics:  # its master would have removed it on the way out
            shutil.rmtree(directory, ignore_errors=True)
        return killed

    def revive_host(self, host: Server) -> Server:
        """A new master on the dead one's port with the same settings, in its place."""
        assert host.process is not None and host.process.poll() is not None, "the host is still running"
        revived = Server(env=host.env, token=host.token, port=host.port)
        self.hosts[self.hosts.index(host)] = revived
        self._start_host(revived)
        return revived

    def reap(self) -> None:
        """Reap the killed hosts' processes that ended here, and only those:
        one not (yet) reparented here stays listed until it is gone."""
        for pid in list(self.adopted):
            try:
                reaped, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                reaped = 0 if pid_exists(pid) else pid
            if reaped:
                self.adopted.discard(pid)

    def leftovers(self, pids: list[int], timeout: float = 10.0) -> list[int]:
        """Of ``pids``, those still alive (zombies included) after ``timeout``; reaped as they end."""

        def alive() -> list[int]:
            self.reap()
            return [pid for pid in pids if pid_exists(pid)]

        wait_until(lambda: not alive(), timeout)
        return alive()
