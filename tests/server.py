"""Run the real service for tests: gunicorn, gevent worker, a free loopback port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LoopbackAddress:
    """The URLs of a server listening on ``127.0.0.1:port``."""

    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Server(LoopbackAddress):
    """A gunicorn master we started; stopped (and waited for) by ``stop``."""

    env: dict[str, str] = field(default_factory=dict)
    token: str = "test-token"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    stderr: Any = None  # where gunicorn's log goes (a file object), or inherited

    def __post_init__(self) -> None:
        """A state directory of its own (login codes, id marks), never the user's, gone with the object."""
        self.state_dir = tempfile.mkdtemp(prefix="procwire-test-state-")
        weakref.finalize(self, shutil.rmtree, self.state_dir, True)

    def start(self) -> Server:
        env = dict(os.environ)
        env.update(
            PROCWIRE_BIND=f"127.0.0.1:{self.port}",
            PROCWIRE_TOKEN=self.token,
            PROCWIRE_LOG_LEVEL="warning",
            PROCWIRE_STATE_DIR=self.state_dir,
        )
        env.update(self.env)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--no-control-socket"],
            cwd=ROOT,
            env=env,
            stderr=self.stderr,
            start_new_session=True,
        )
        self._wait_until_healthy()
        return self

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.http}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("gunicorn did not become healthy in time")

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        return children_of(self.process.pid)

    def stop(self) -> None:
        if self.process is not None:
            stop_master(self.process)


def stop_master(process: subprocess.Popen) -> None:
    """SIGTERM a gunicorn master we started (a graceful stop), SIGKILL its group if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def children_of(pid: int) -> list[int]:
    children: list[int] = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children += [int(child) for child in path.read_text().split()]
        except OSError:
            continue
    return children


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; the last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def pid_exists(pid: int) -> bool:
    """True while ``pid`` is a live process (zombies count as alive here: they are leaks too)."""
    return Path(f"/proc/{pid}").exists()
