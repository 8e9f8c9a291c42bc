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
import errno
import logging
import os
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
from gevent import get_hub
from gevent.event import Event

from app.processes.forkexec import close_fd

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
SWEEP_INTERVAL = 1.0
POLL_WITHOUT_PIDFD = 0.05
READ = 1  # libev's EV_READ
LOST_STATUS = 255 << 8  # a wait status: exit code 255
NO_RUSAGE = resource.struct_rusage((0.0, 0.0) + (0,) * 14)


@dataclass(frozen=True)
class Reaped:
    """A child's wait status and the rusage ``wait4`` reported for it."""

    status: int
    rusage: Any


class ChildWatch:
    """One child, from right after its fork until it is reaped.

    The exit is noticed by a libev watcher on the child's pidfd (or a polling
    timer without one) and reaped in its callback, in the hub: no greenlet
    sits waiting per child, and the exit costs no switch before it is known.
    """

    def __init__(self, reaper: ChildReaper, pid: int) -> None:
        self.pid = pid
        self._reaper = reaper
        self._pidfd = _open_pidfd(pid)
        self._done = Event()
        self._callbacks: list[Callable[[Reaped], None]] = []
        self.result: Reaped | None = None
        loop = get_hub().loop
        self._watcher = loop.io(self._pidfd, READ) if self._pidfd is not None else loop.timer(0, POLL_WITHOUT_PIDFD)
        self._watcher.start(self._reap_if_exited)

    @property
    def reaped(self) -> bool:
        return self.result is not None

    def wait_reaped(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def when_reaped(self, callback: Callable[[Reaped], None]) -> None:
        """Call ``callback(result)`` once the child is reaped (now if it is).
        It may run in the hub, so it must never block."""
        if self.result is not None:
            callback(self.result)
        else:
            self._callbacks.append(callback)

    def send_signal(self, signum: int) -> None:
        """Signal this very process: through its pidfd, a reused pid is never hit
        (until it is reaped, the pid cannot be reused anyway)."""
        if self._pidfd is not None:
            signal.pidfd_send_signal(self._pidfd, signum)
        elif not self.reaped:
            os.kill(self.pid, signum)

    def _reap_if_exited(self) -> None:
        try:
            pid, status, rusage = os.wait4(self.pid, os.WNOHANG)  # with a readable pidfd: a zombie, reaped at once
        except ChildProcessError:
            # Only if the invariant above was broken; never spin on a pidfd that stays readable.
            log.error("child %d was reaped elsewhere: its exit status is lost (reported as 255)", self.pid)
            pid, status, rusage = self.pid, LOST_STATUS, NO_RUSAGE
        if not pid:
            return
        self._watcher.close()
        if self._pidfd is not None:
            close_fd(self._pidfd)
            self._pidfd = None
        self._reaper.forget(self.pid)
        self.result = Reaped(status, rusage)
        self._done.set()
        for callback in self._callbacks:
            callback(self.result)
        self._callbacks.clear()
        self._reaper.sweep_orphans()


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except OSError as error:
        if error.errno not in (errno.ENOSYS, errno.EPERM):
            raise
        return None  # kernels before 5.3, or seccomp: fall back to polling


class ChildReaper:
    """Knows which children are watched; reaps the others when they exit."""

    def __init__(self) -> None:
        self._tracked: set[int] = set()
        self._started_in: int | None = None

    def watch(self, pid: int) -> ChildWatch:
        """Start watching ``pid``; call right after the fork, before yielding."""
        self._ensure_started()
        watch = ChildWatch(self, pid)
        self._tracked.add(pid)
        return watch

    def forget(self, pid: int) -> None:
        self._tracked.discard(pid)

    def _ensure_started(self) -> None:
        if self._started_in == os.getpid():
            return
        self._started_in = os.getpid()
        _become_subreaper()
        gevent.spawn(self._sweep_forever)

    def _sweep_forever(self) -> None:
        while True:
            gevent.sleep(SWEEP_INTERVAL)
            self.sweep_orphans()

    def sweep_orphans(self) -> None:
        """Reap exited children that nobody watches (adopted grandchildren)."""
        if not _a_child_has_exited():
            return
        for pid in children() - self._tracked:
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG)


def _a_child_has_exited() -> bool:
    """One system call instead of reading /proc when there is nothing to reap."""
    try:
        return os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return False


def children() -> set[int]:
    """Our children, orphans included: the kernel hands adopted ones to the
    subreaper's main thread, which is also the only thread that forks."""
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as file:
            return {int(child) for child in file.read().split()}
    except OSError:
        return set()


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("cannot become a child subreaper: %s", os.strerror(ctypes.get_errno()))


reaper = ChildReaper()
