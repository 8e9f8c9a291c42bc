"""Reap every child of this worker, with its resource usage.

Each child we start is watched through a pidfd (readable once it exits) and
then reaped with ``wait4``, which also yields its rusage.  SIGCHLD is left
alone on purpose: a gevent SIGCHLD watcher makes libev reap every child
itself with ``waitpid(-1)``, losing statuses and rusage.

The worker is made a child subreaper, so grandchildren orphaned by a dying
process come back to us instead of lingering as zombies under an init that
may not reap.  They are reaped by a sweep after each tracked exit and every
``SWEEP_INTERVAL`` seconds.

Invariant: nothing else in the worker may wait for children (no
``gevent.subprocess``, no ``os.waitpid``), or statuses would be stolen.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import logging
import os
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.event import AsyncResult
from gevent.socket import wait_read

from app.launcher import close_fd

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
SWEEP_INTERVAL = 1.0


@dataclass(frozen=True)
class Reaped:
    """A child's wait status and the rusage ``wait4`` reported for it."""

    status: int
    rusage: Any


class ChildReaper:
    """Collects exit statuses of this process's children."""

    def __init__(self) -> None:
        self._tracked: set[int] = set()
        self._started_in: int | None = None

    def watch(self, pid: int) -> AsyncResult:
        """Return the AsyncResult that receives ``pid``'s :class:`Reaped`."""
        self._ensure_started()
        pidfd = os.pidfd_open(pid)
        self._tracked.add(pid)
        result = AsyncResult()
        gevent.spawn(self._reap_when_exited, pid, pidfd, result)
        return result

    def _ensure_started(self) -> None:
        if self._started_in == os.getpid():
            return
        self._started_in = os.getpid()
        _become_subreaper()
        gevent.spawn(self._sweep_forever)

    def _reap_when_exited(self, pid: int, pidfd: int, result: AsyncResult) -> None:
        try:
            wait_read(pidfd)
            _, status, rusage = os.wait4(pid, 0)  # a zombie by now: returns at once
        finally:
            close_fd(pidfd)
            self._tracked.discard(pid)
        result.set(Reaped(status, rusage))
        self.sweep_orphans()

    def _sweep_forever(self) -> None:
        while True:
            gevent.sleep(SWEEP_INTERVAL)
            self.sweep_orphans()

    def sweep_orphans(self) -> None:
        """Reap exited children that nobody watches (adopted grandchildren)."""
        for pid in _children() - self._tracked:
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG)


def _children() -> set[int]:
    pids: set[int] = set()
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        try:
            with open(path) as file:
                pids.update(int(pid) for pid in file.read().split())
        except OSError:
            continue
    return pids


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("cannot become a child subreaper: %s", os.strerror(ctypes.get_errno()))


reaper = ChildReaper()
