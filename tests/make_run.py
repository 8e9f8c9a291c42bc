"""``make run`` for real, in a clean HOME, as a newcomer runs it: on a terminal.

The real Makefile's ``run`` target (its ``install`` prerequisites taken as up
to date: ``make -o``), with HOME and the XDG directories in a temporary
directory and ``PROCWIRE_BIND`` on a free loopback port.  Its output is read
from a pseudo-terminal (or a pipe, or a file) until the framed block that
says how to get in has been printed, within a bound.  Stopped by the pid of
the gunicorn master that make started (make then reaps it and exits), then
anything left of the process group made for it is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.server import ROOT, children_of, free_port, wait_until

BOUND = 30.0  # seconds to wait for the block, and for the stop
FRAME = "=" * 78
TITLE = " procwire is ready ".center(78, "=")
MAKE = ["make", "-o", ".venv/.installed", "-o", "node_modules/.installed", "run"]


def clean_env(home: Path, port: int, extra: dict[str, str]) -> dict[str, str]:
    """The test's environment without procwire's settings, make's flags or XDG paths."""
    dropped = ("PROCWIRE_", "XDG_", "MAKE", "MFLAGS", "JOURNAL_STREAM")
    env = {key: value for key, value in os.environ.items() if not key.startswith(dropped)}
    env.update(
        HOME=str(home),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        XDG_CONFIG_HOME=str(home / ".config"),
        PROCWIRE_BIND=f"127.0.0.1:{port}",
    )
    env.update(extra)
    return env


@dataclass
class MakeRun:
    """One ``make run``; ``output`` is everything it printed so far (CR LF made LF)."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)
    make_args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    terminal: bool = True  # stdout and stderr on a pseudo-terminal; else on ``output_file``
    output_file: IO[bytes] | None = None
    output: str = ""
    process: subprocess.Popen[bytes] | None = None
    _master: int | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MakeRun:
        env = clean_env(self.home, self.port, self.env)
        if self.terminal:
            self._master, slave = pty.openpty()
            streams: dict[str, int | IO[bytes]] = {"stdin": slave, "stdout": slave, "stderr": slave}
        else:
            assert self.output_file is not None
            streams = {"stdin": subprocess.DEVNULL, "stdout": self.output_file, "stderr": self.output_file}
        try:
            self.process = subprocess.Popen(
                [*MAKE, *self.make_args], cwd=ROOT, env=env, start_new_session=True, **streams
            )  # type: ignore[call-overload]
        finally:
            if self.terminal:
                os.close(slave)
        return self

    def read_block(self) -> str:
        """The framed block, once printed (bounded); what make printed is in ``output``."""
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            self.read_for(0.1)
            match = re.search(rf"^{re.escape(TITLE)}\n(.*?)^{FRAME}$", self.output, re.MULTILINE | re.DOTALL)
            if match:
                return match.group(1)
            assert self.process is not None
            if self.process.poll() is not None:
                self.read_for(0.2)
                raise AssertionError(f"make run exited with {self.process.returncode}:\n{self.output}")
        raise AssertionError(f"no block within {BOUND} s:\n{self.output}")

    def read_for(self, seconds: float) -> str:
        """Whatever is printed within ``seconds``."""
        before = len(self.output)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._master is not None:
                ready, _, _ = select.select([self._master], [], [], left)
                if not ready:
                    break
                try:
                    chunk = os.read(self._master, 65536)
                except OSError:  # EIO: every writer is gone
                    break
                self.output += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
            else:
                assert self.output_file is not None
                time.sleep(min(left, 0.05))
                self.output = Path(self.output_file.name).read_text(errors="replace")
        return self.output[before:]

    def exports(self) -> dict[str, str]:
        """The variables of the block's ``export`` lines, as a shell would read them."""
        found: dict[str, str] = {}
        for line in self.output.splitlines():
            words = shlex.split(line)
            if words[:1] == ["export"]:
                found.update(word.split("=", 1) for word in words[1:])  # type: ignore[misc]
        return found

    def login_code(self) -> str:
        match = re.search(rf"^ +{re.escape(self.http)}/\?code=(\S+)$", self.output, re.MULTILINE)
        assert match, self.output
        return match.group(1)

    def stop(self) -> None:
        """SIGTERM to the gunicorn master make started; make reaps it and exits."""
        if self.process is None:
            return
        try:
            if self.process.poll() is None:
                for master in children_of(self.process.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(master, signal.SIGTERM)
                deadline = time.monotonic() + BOUND
                while self.process.poll() is None and time.monotonic() < deadline:
                    self.read_for(0.1)  # keep the terminal drained: a full one would block the server's writes
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)  # the group made for it: nothing may be left
            if self.process.poll() is None:
                self.process.wait(timeout=10)
            if self._master is not None:
                self.read_for(0)
                os.close(self._master)
                self._master = None

    def group_gone(self) -> bool:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return True
        return False

    def __enter__(self) -> MakeRun:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        assert wait_until(self.group_gone, timeout=10)
