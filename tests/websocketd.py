"""The real websocketd for the differential tests: Debian's package on a free loopback port.

websocketd is required: ``make test`` installs it when run as root (the
``install-websocketd`` target), so a missing one fails the tests that use
it rather than skipping them.  It is started in the foreground, ready once
its port accepts a connection, and stopped by its own pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.server import free_port

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def websocketd_binary() -> str:
    found = shutil.which("websocketd") or next(
        (path for path in ("/usr/bin/websocketd", "/usr/local/bin/websocketd") if os.access(path, os.X_OK)), None
    )
    if found is None:
        pytest.fail(
            "websocketd is required: `make test` installs it when run as root, else `sudo apt-get install websocketd`"
        )
    return found


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


@dataclass
class Websocketd:
    """``websocketd --address=127.0.0.1 --port=PORT [flags] [COMMAND...]``, started by a test."""

    arguments: Sequence[str]  # its flags, then the program and its arguments for the single-program form
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def url(self, path: str = "/") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def start(self) -> Websocketd:
        handle, name = tempfile.mkstemp(prefix="procwire-websocketd-", suffix=".log")
        self.log = Path(name)
        command = [websocketd_binary(), "--address=127.0.0.1", f"--port={self.port}", *self.arguments]
        with os.fdopen(handle, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"websocketd did not listen on port {self.port}: {self.log.read_text(errors='replace')}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """SIGTERM to its pid; then SIGKILL to its process group, which it leads: any
        program of its still running (websocketd does not wait for them) goes too."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        if self.log is not None:
            self.log.unlink(missing_ok=True)

    def __enter__(self) -> Websocketd:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
