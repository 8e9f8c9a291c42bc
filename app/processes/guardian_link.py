"""This worker's side of its guardian (``guardian.py``): start it, tell it about every child.

The guardian is a process of its own that SIGKILLs the worker's process
groups once the worker is gone, however it died (docs/security.md, "When a
worker or a host dies").  :data:`guardian` is told of each child by
:func:`~app.processes.launcher.launch`, right after the fork.
"""

from __future__ import annotations

import _socket
import contextlib
import errno
import logging
import os
import struct
import sys
import time
from collections import deque
from typing import Any

import gevent
from gevent import get_hub

from app.processes import guardian as guardian_program
from app.processes.forkexec import close_fd, fork_exec
from app.processes.reaper import children

GUARDIAN = os.path.abspath(guardian_program.__file__)
GUARDIAN_RETRY = 60.0  # seconds before starting again a guardian that died at once
READ, WRITE = 1, 2  # libev's EV_READ, EV_WRITE

log = logging.getLogger(__name__)


class Guardian:
    """This worker's side of its guardian process (``guardian.py``), which
    SIGKILLs the worker's process groups if the worker dies with its master.

    Started with the worker's first process and told about every child right
    after its fork: a pidfd (exact even if the pid is later reused) and the
    group id, in one non-blocking ``sendmsg``.  It reports when it has had
    nothing to guard for a while, and is then let go, so an idle worker has
    no child.  Nothing here yields: it runs between the fork and the first
    yield of :func:`launch`, and in the hub's callbacks.
    """

    def __init__(self) -> None:
        self._channel: Any = None  # our end of the SOCK_SEQPACKET socket (a raw _socket.socket)
        self._reader: Any = None  # libev watcher: the guardian's offers, or its end
        self._writer: Any = None  # libev watcher: room for pending registrations
        self._pending: deque[tuple[int, int]] = deque()  # (pidfd, group) the socket had no room for yet
        self._sent = 0
        self._pid = 0
        self._worker = 0  # the pid that started it: a fork inherits no guardian
        self._started_at = 0.0
        self._retry_at = 0.0  # no guardian before: one died at once, or pidfds are not available
        self._former: set[int] = set()  # guardians let go, perhaps not reaped yet

    @property
    def pid(self) -> int | None:
        """The running guardian's pid, if any."""
        return self._pid if self._channel is not None and self._worker == os.getpid() else None

    def register(self, pid: int) -> None:
        """Have ``pid``, a child forked a moment ago, guarded.  Call it before
        anything yields: until the child is reaped its pid is its own."""
        try:
            if self.pid is None:
                self._start()  # registers every child, this one included
            else:
                self._send(os.pidfd_open(pid), pid)  # a pty leader's group is its pid once setsid(1) ran
        except OSError as error:
            if error.errno in (errno.ENOSYS, errno.EPERM):  # no pidfd_open (before Linux 5.3, or seccomp)
                self._let_go()
                self._retry_at = float("inf")
            log.warning("process %d is not guarded against the loss of this worker: %s", pid, error)

    def _start(self) -> None:
        """Start a guardian and register every child of this worker with it."""
        if time.monotonic() < self._retry_at:
            return
        self._let_go()
        worker_end, guardian_end = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        try:
            self._pid = self._spawn(guardian_end.fileno())
        except BaseException:
            worker_end.close()
            raise
        finally:
            guardian_end.close()
        self._channel, self._worker, self._started_at, self._sent = worker_end, os.getpid(), time.monotonic(), 0
        loop = get_hub().loop
        self._reader, self._writer = loop.io(worker_end.fileno(), READ), loop.io(worker_end.fileno(), WRITE)
        self._reader.start(self._read)
        alive = children()
        self._former &= alive
        for pidfd, group in _groups_of(alive - self._former - {self._pid}):
            self._send(pidfd, group)

    @staticmethod
    def _spawn(channel: int) -> int:
        """The guardian on ``channel`` as its stdin, in a session of its own
        (no terminal's signals), with no environment (nothing of the server's
        secrets).  An exec failure shows as the channel's end, see :meth:`_read`."""
        errpipe_r, errpipe_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        argv = [sys.executable, "-I", "-S", GUARDIAN, str(os.getpid()), str(os.getpgrp())]
        try:
            return fork_exec(argv, sys.executable, "/", (), (channel, -1, -1), (errpipe_r, errpipe_w), True)
        finally:
            close_fd(errpipe_r)
            close_fd(errpipe_w)

    def _send(self, pidfd: int, group: int) -> None:
        """Queue one registration; it owns ``pidfd`` from here on."""
        self._pending.append((pidfd, group))
        if len(self._pending) == 1:
            self._flush()

    def _flush(self) -> None:
        """Send what the socket has room for; wait to be writable for the rest."""
        while self._pending:
            pidfd, group = self._pending[0]
            try:
                self._channel.sendmsg(
                    [b"%d" % group],
                    [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", pidfd))],
                    _socket.MSG_DONTWAIT | _socket.MSG_NOSIGNAL,
                )
            except BlockingIOError:
                self._writer.start(self._flush)
                return
            except OSError:  # EPIPE: the guardian is gone; the reader sees its end and starts another
                self._writer.stop()
                return
            self._pending.popleft()
            close_fd(pidfd)
            self._sent += 1
        self._writer.stop()

    def _read(self) -> None:
        """In the hub: an offer to exit, taken if nothing was sent since; or the guardian's end."""
        while self._channel is not None:
            try:
                message = self._channel.recv(guardian_program.MESSAGE_SIZE, _socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:
                self._lost()
            elif message == guardian_program.idle_offer(self._sent) and not self._pending:
                self._let_go()

    def _lost(self) -> None:
        """The guardian died (killed, or its exec failed): start another, in
        a greenlet, unless it died at once."""
        lived = time.monotonic() - self._started_at
        self._let_go()
        if lived < 1.0:
            log.error("the guardian exited at once: processes are not guarded for %.0f s", GUARDIAN_RETRY)
            self._retry_at = time.monotonic() + GUARDIAN_RETRY
            return
        log.warning("the guardian exited after %.1f s; starting another", lived)
        gevent.spawn(self._restart)

    def _restart(self) -> None:
        if self.pid is None:
            try:
                self._start()
            except OSError as error:
                log.error("cannot start a guardian: %s", error)

    def _let_go(self) -> None:
        """Close our end: the guardian kills what it still guards (nothing,
        when it offered to exit) and exits; the reaper's sweep reaps it."""
        if self._channel is None:
            return
        for watcher in (self._reader, self._writer):
            watcher.stop()
            watcher.close()
        while self._pending:
            close_fd(self._pending.popleft()[0])
        if self._worker == os.getpid():
            self._former.add(self._pid)
            self._channel.close()
        self._channel = self._reader = self._writer = None


def _groups_of(children: set[int]) -> list[tuple[int, int]]:
    """A pidfd and the group of each child: leaders, and the orphans of their
    groups this worker adopted as a subreaper.  A child still in our own
    group is a pty leader before setsid(1) ran: its group will be its pid."""
    own_group = os.getpgrp()
    found = []
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            group = os.getpgid(child)
            found.append((os.pidfd_open(child), child if group == own_group else group))
    return found


guardian = Guardian()
