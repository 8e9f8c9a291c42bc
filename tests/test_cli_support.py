"""Helpers for the CLI tests: the real ``python -m procwire_client`` against the real server,
through pipes (``procwire``) or through a real pseudo-terminal (:class:`Terminal`)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import shlex
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator

from tests.server import ROOT, Server

BOUND = 20.0  # seconds: every wait in these tests is bounded
COMMAND = [sys.executable, "-m", "procwire_client"]


def cli_env(server: Server, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROCWIRE_")}
    env.update({"PROCWIRE_URL": server.url, "PROCWIRE_TOKEN": server.token, **extra})
    return env


def procwire(
    server: Server, *args: str, input: bytes | None = None, env: dict[str, str] | None = None, **kwargs: object
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*COMMAND, *args],
        input=input,
        env=env if env is not None else cli_env(server),
        capture_output=True,
        timeout=BOUND,
        cwd=ROOT,
        **kwargs,  # type: ignore[arg-type]
    )


def one_line(stderr: bytes) -> str:
    text = stderr.decode()
    assert text.count("\n") == 1 and text.startswith("procwire: "), text
    return text


# -- run ----------------------------------------------------------------------------------------
class Terminal:
    """A shell script run on a pseudo-terminal we control (the test's side is ``fd``)."""

    def __init__(self, script: str, env: dict[str, str], rows: int = 33, cols: int = 101) -> None:
        size = struct.pack("HHHH", rows, cols, 0, 0)
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: a new session whose controlling terminal is the pty
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, size)
                os.chdir(ROOT)
                os.execve("/bin/sh", ["/bin/sh", "-c", script], env)
            finally:
                os._exit(127)
        self.output = b""
        self.status: int | None = None

    def write(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def _read(self, timeout: float) -> bool:
        """Read what is there; False at end of file."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: every process holding the terminal is gone
            return False
        self.output += data
        return bool(data)

    def read_until(self, pattern: str, timeout: float = BOUND, since: int = 0) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern.encode(), self.output[since:])
            if match:
                return match
            if not self._read(0.1):
                break
        raise AssertionError(f"{pattern!r} not seen; terminal shows {self.output[since:]!r}")

    def finish(self, timeout: float = BOUND) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(0.1):
            pass
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
            time.sleep(0.05)
        raise AssertionError(f"the terminal's script did not end; it shows {self.output!r}")

    def close(self) -> None:
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)  # the child leads its own session and group
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def opened_terminals() -> Iterator[list[Terminal]]:
    """For a ``terminals`` fixture: the terminals a test opened, closed after it."""
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


def procwire_line(*args: str) -> str:
    return shlex.join([*COMMAND, *args])
