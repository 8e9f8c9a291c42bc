"""A real Redis for tests: ``redis-server`` on a free loopback port, nothing persisted.

The cluster tests run against the real server, never a fake: Debian's
``redis-server`` (``make test`` installs it when run as root), or Valkey's
``valkey-server`` when that is what the machine has.  Each instance listens on
127.0.0.1 only, keeps nothing on disk (``--save "" --appendonly no``), so a
restart comes back empty as after a crash, and works in a directory of its
own, removed when it stops.  It is stopped, killed, frozen or restarted by its
own pid only.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.server import free_port

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
BINARIES = ("redis-server", "valkey-server")


def redis_binary() -> str:
    for name in BINARIES:
        found = shutil.which(name) or next(
            (path for path in (f"/usr/bin/{name}", f"/usr/local/bin/{name}") if Path(path).is_file()), None
        )
        if found is not None:
            return found
    pytest.fail(
        "redis-server is required: `make test` installs it when run as root, else `sudo apt-get install redis-server`"
    )


def answers_ping(port: int, timeout: float = 1.0) -> bool:
    """One inline PING over a raw socket: no client library, no connection pool to leak."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """A ``redis-server`` we started; the same port across restarts."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    directory: Path | None = None  # its working directory and log, while it runs

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.running else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> RedisServer:
        """Start (again, on the same port): empty, since nothing was persisted."""
        assert not self.running, "redis-server is already running"
        self.directory = Path(tempfile.mkdtemp(prefix="procwire-redis-"))
        command = [redis_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        command += ["--dir", str(self.directory), "--logfile", str(self.directory / "redis.log"), "--daemonize", "no"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not answers_ping(self.port):
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.log()
                self.kill()
                raise RuntimeError(f"redis-server did not answer PING on port {self.port}:\n{log}")
            time.sleep(0.02)

    def log(self) -> str:
        path = self.directory / "redis.log" if self.directory else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def stop(self) -> None:
        """SIGTERM (it saves nothing on the way out), SIGKILL if it lingers."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            self.process.send_signal(signal.SIGCONT)  # a frozen one too
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        self._remove_directory()

    def kill(self) -> None:
        """SIGKILL, as a crash: clients see their connections reset."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)  # a frozen one dies as well
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
        self._remove_directory()

    def restart(self) -> None:
        """A crash and a restart on the same port: every key is gone."""
        self.kill()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and the port accepts, but nothing is
        answered: Redis unreachable rather than refusing."""
        assert self.process is not None and self.running
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None and self.running
        self.process.send_signal(signal.SIGCONT)

    def client(self, **options: Any) -> redis.Redis:
        """A redis-py client for looking at the keys (bounded by a socket timeout)."""
        return redis.Redis.from_url(self.url, **{"socket_timeout": 5, "socket_connect_timeout": 5, **options})

    def _remove_directory(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
