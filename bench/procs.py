"""Processes the suite starts, and the small /proc readings it needs.

Every process goes through a :class:`Supervisor`: it leads a new session
(so a Ctrl-C at the terminal reaches only the suite, which then stops its
children in order), is stopped by its own pid, and the processes it left
behind (a server's children, which lead sessions of their own) are killed
by pid once it is gone.  ``stop_all`` runs on normal exit, on an exception
and on SIGINT/SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid: int) -> int:
    """Pss of ``pid`` in KiB (0 once it is gone): its private pages, and its share of the
    pages it shares, so that the figures of many processes add up without double counting."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pss_kib(pid: int) -> int:
    """Pss of ``pid`` and of every descendant (a server and the programs it runs), in KiB."""
    return pss_kib(pid) + sum(pss_kib(known.pid) for known in descendants(pid))


def children_of(pid: int) -> list[int]:
    """The children of ``pid``; none once it is gone (it may exit while we look)."""
    found: list[int] = []
    try:
        paths = list(Path(f"/proc/{pid}/task").glob("*/children"))
    except OSError:
        return found
    for path in paths:
        with contextlib.suppress(OSError):
            found += [int(child) for child in path.read_text().split()]
    return found


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: tells a pid apart from a later reuse of it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass(frozen=True)
class _Known:
    pid: int
    started: str


def descendants(pid: int) -> list[_Known]:
    """Every live descendant of ``pid``, with its start time."""
    found: list[_Known] = []
    queue = [pid]
    while queue:
        for child in children_of(queue.pop()):
            started = _start_time(child)
            if started is not None:
                found.append(_Known(child, started))
                queue.append(child)
    return found


def raise_open_files_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard one (inherited by the servers); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Supervisor:
    """Starts processes, and stops each one by its pid."""

    processes: list[subprocess.Popen] = field(default_factory=list)
    _seen: dict[int, list[_Known]] = field(default_factory=dict)

    def start(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stdout: object = None,
        stderr: object = None,
    ) -> subprocess.Popen:
        process = subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def note_descendants(self, process: subprocess.Popen) -> None:
        """Remember ``process``'s descendants now, to sweep them after it stops."""
        known = {entry.pid: entry for entry in self._seen.get(process.pid, [])}
        known.update({entry.pid: entry for entry in descendants(process.pid)})
        self._seen[process.pid] = list(known.values())

    def stop(self, process: subprocess.Popen, first: int = signal.SIGTERM, grace: float = 10.0) -> None:
        """``first`` to the pid, SIGKILL to its group after ``grace``, then sweep what it left."""
        if process.poll() is None:
            self.note_descendants(process)
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(first)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)  # its own group: pgid == its pid
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
        for entry in self._seen.pop(process.pid, []):
            if _start_time(entry.pid) == entry.started:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(entry.pid, signal.SIGKILL)
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self.processes)):
            with contextlib.suppress(Exception):
                self.stop(process, grace=5.0)


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP: unwind so that every ``finally`` runs."""


_interrupted: list[str] = []


def _interrupt(signum: int, frame: object) -> None:
    _interrupted.append(signal.Signals(signum).name)
    raise Interrupted(signal.Signals(signum).name)


def raise_if_interrupted() -> None:
    """Raise again an interrupt that some library swallowed (websocket-client has bare excepts)."""
    if _interrupted:
        raise Interrupted(_interrupted[0])


def install_signal_handlers() -> None:
    # SIGINT too: a program started in the background gets it ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
