"""The servers under test, each on a free loopback port.

procwire runs exactly as deployed: gunicorn with gevent workers (one unless
``PROCWIRE_WORKERS`` says otherwise), from ``gunicorn.conf.py``; the
reference is Debian's ``websocketd``.  The cluster rows add a Redis
(Debian's ``redis-server``), started by the suite with nothing persisted.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen

from bench.procs import Supervisor, children_of, free_port, rss_kib, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
WEBSOCKETD_INSTALL_HINT = "websocketd is not installed: `apt-get install websocketd` (Debian/Ubuntu) adds the reference"
REDIS_INSTALL_HINT = "redis-server is not installed: `apt-get install redis-server` adds the cluster rows"


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class _Supervised:
    """What both servers do the same way once started."""

    supervisor: Supervisor
    process: Popen | None

    def measured_pid(self) -> int:
        raise NotImplementedError

    def measured_pids(self) -> list[int]:
        """Every process whose CPU counts as the server's (the workers, not the master)."""
        return [self.measured_pid()]

    def rss_kib(self) -> int:
        return rss_kib(self.measured_pid())

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _stop(self, grace: float) -> None:
        if self.process is not None:
            self.supervisor.stop(self.process, grace=grace)
            self.process = None


@dataclass
class Procwire(_Supervised):
    """gunicorn + one gevent worker, started by the suite."""

    supervisor: Supervisor
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    root: Path = ROOT  # the tree it runs from: this checkout, or an export of one commit
    config: str = "gunicorn.conf.py"  # relative to root, or absolute (bench/timeline_gunicorn.py)
    process: Popen | None = None
    label = "procwire"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def headers(self) -> list[str]:
        return [f"Authorization: Bearer {self.token}"]

    def start(self) -> Procwire:
        # Only the settings given here: none inherited from the caller's environment.
        env = {key: value for key, value in os.environ.items() if not key.startswith("PROCWIRE_")}
        env.update(
            PROCWIRE_BIND=f"127.0.0.1:{self.port}",
            PROCWIRE_TOKEN=self.token,
            PROCWIRE_LOG_LEVEL="warning",
        )
        env.update(self.env)
        gunicorn = ROOT / ".venv" / "bin" / "gunicorn"
        argv = [str(gunicorn)] if gunicorn.exists() else [sys.executable, "-m", "gunicorn"]
        self.log = self.log_dir / f"procwire-{self.port}.log"
        with open(self.log, "wb") as log:
            self.process = self.supervisor.start(
                [*argv, "-c", self.config, "--no-control-socket"],
                env=env,
                cwd=self.root,
                stdout=log,
                stderr=log,
            )
        try:
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"procwire exited with {self.process.returncode}:\n{_tail(self.log)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as answer:
                    if answer.status == 200 and len(children_of(self.process.pid)) >= self.workers:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"procwire did not become healthy in {START_TIMEOUT} s:\n{_tail(self.log)}")

    @property
    def workers(self) -> int:
        return int(self.env.get("PROCWIRE_WORKERS", "1"))

    def measured_pid(self) -> int:
        """The gevent worker's pid (the master only supervises it)."""
        workers = self.measured_pids()
        if len(workers) != 1:
            raise RuntimeError(f"expected one gunicorn worker, found {workers}")
        return workers[0]

    def measured_pids(self) -> list[int]:
        """The gevent workers' pids."""
        assert self.process is not None
        return children_of(self.process.pid)

    def stop(self) -> None:
        self._stop(grace=15.0)


@dataclass
class Websocketd(_Supervised):
    """``websocketd [--binary] COMMAND...`` (or ``--dir``), errors-only logging."""

    supervisor: Supervisor
    log_dir: Path
    command: list[str]
    binary: bool = False
    port: int = field(default_factory=free_port)
    process: Popen | None = None
    label = "websocketd"

    @staticmethod
    def available() -> str | None:
        return shutil.which("websocketd")

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def headers(self) -> list[str]:
        return []

    def start(self) -> Websocketd:
        executable = self.available()
        if executable is None:
            raise RuntimeError(WEBSOCKETD_INSTALL_HINT)
        argv = [executable, "--address=127.0.0.1", f"--port={self.port}", "--loglevel=error"]
        if self.binary:
            argv.append("--binary")
        self.log = self.log_dir / f"websocketd-{self.port}.log"
        with open(self.log, "wb") as log:
            self.process = self.supervisor.start([*argv, *self.command], stdout=log, stderr=log)
        try:
            wait_for_port(self.port, self.process, START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def measured_pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        self._stop(grace=10.0)


@dataclass
class Redis(_Supervised):
    """``redis-server`` on 127.0.0.1, no persistence (``--save "" --appendonly no``), in a
    directory of its own that goes when it stops."""

    supervisor: Supervisor
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: Popen | None = None
    directory: Path | None = None
    label = "redis-server"

    @staticmethod
    def available() -> str | None:
        return shutil.which("redis-server") or shutil.which("valkey-server")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        executable = self.available()
        if executable is None:
            raise RuntimeError(REDIS_INSTALL_HINT)
        self.directory = Path(tempfile.mkdtemp(prefix="bench-redis-", dir=self.log_dir))
        self.log = self.log_dir / f"redis-{self.port}.log"
        argv = [executable, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(self.directory), "--daemonize", "no", "--loglevel", "warning"]
        with open(self.log, "wb") as log:
            self.process = self.supervisor.start(argv, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while self.command(b"PING") != b"+PONG":
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer PING on port {self.port}:\n{_tail(self.log)}")
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise
        return self

    def command(self, inline: bytes, timeout: float = 5.0) -> bytes:
        """One inline command over a plain socket; its first answer line ("" when unreachable)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(inline + b"\r\n")
                answer = b""
                while not answer.endswith(b"\r\n"):
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
                return answer.split(b"\r\n", 1)[0]
        except OSError:
            return b""

    def flush(self) -> None:
        """Empty every database: each workload starts on an empty Redis."""
        if self.command(b"FLUSHALL") != b"+OK":
            raise RuntimeError(f"FLUSHALL failed on redis-server port {self.port}")

    def measured_pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        self._stop(grace=10.0)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


Server = Procwire | Websocketd
