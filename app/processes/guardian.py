"""The guardian: SIGKILLs a worker's process groups once the worker is gone.

Every process procwire starts leads its own session and group, as a child of
a gunicorn worker.  When only the worker dies, the master (a child subreaper)
adopts those processes and its ``child_exit`` hook kills their groups.  When
the master dies too (a host's procwire SIGKILLed at once), nobody would:
this program does.  Each worker starts one guardian with its first process
(``app.processes.guardian_link.Guardian``) and sends it, for every child, a pidfd
and the group id over a SOCK_SEQPACKET socket, the guardian's stdin.  However
the worker dies, the kernel closes the worker's end; at that end of file the
guardian SIGKILLs every group it knows and every leader, by its pidfd, then
exits.

Why not the parent-death signal: ``prctl(PR_SET_PDEATHSIG)`` must be called
by the child itself, which here runs no Python, so it would cost an exec of
setpriv(1) in front of every program (0.5 to 0.8 ms per start, measured), and
it reaches the leaders only.  This costs the worker one ``sendmsg`` per start
and reaches whole groups, grandchildren included.

A group id is only unambiguous while a member of the group lives: the kernel
never hands out a pid that is still some group's id.  So a group whose leader
exited is checked every ``CHECK_INTERVAL`` and forgotten once it is empty
(its id could then be reused only after a wrap of the whole pid space).
With nothing left to guard for ``IDLE_AFTER`` seconds the guardian offers to
exit (``idle <messages received>``); the worker closes its end only if it
sent nothing since, so a worker without processes has no child either.

Runs as a script with the standard library only (``python -I -S``): no
gevent, no application code.  Usage: ``guardian.py WORKER_PID WORKER_PGID``.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import signal
import socket
import sys
import time

CHECK_INTERVAL = 0.5  # seconds between looks for exited leaders and emptied groups
IDLE_AFTER = 1.0  # seconds with nothing to guard before offering to exit
BATCH_DELAY = 0.02  # seconds between two reads of the channel
MESSAGE_SIZE = 32  # both ways: a group id, or ``idle <count>``


def idle_offer(received: int) -> bytes:
    """The guardian's offer to exit, having received ``received`` registrations."""
    return b"idle %d" % received


class Guardian:
    """The groups of one worker, and what to do when the worker is gone.

    Its cost per start is kept to a few system calls: registrations are read
    in batches (at most one wakeup per ``BATCH_DELAY``; the socket holds them
    meanwhile, and delivers them before its end of file), and exits are
    found every ``CHECK_INTERVAL`` by one poll of every pidfd.
    """

    def __init__(self, channel: socket.socket, spared: set[int]) -> None:
        self.channel = channel
        self.spared = spared  # groups never signalled: the worker's (the master's) and our own
        self.messages = select.poll()
        self.messages.register(channel.fileno(), select.POLLIN)
        self.exits = select.poll()  # every leader's pidfd: readable once it exits
        self.leaders: dict[int, int] = {}  # pidfd -> group
        self.orphaned: set[int] = set()  # groups whose leader exited; members may remain
        self.received = 0
        self.offered_for = 0  # ``received`` when we last offered to exit
        self.idle_since = time.monotonic()
        self.checked_at = time.monotonic()

    def run(self) -> None:
        """Guard until the worker's end of the channel closes, then kill."""
        while True:
            if self.messages.poll(self._timeout()):
                if not self._receive():
                    self.kill_all()
                    return
                time.sleep(BATCH_DELAY)
            self._check()
            self._offer_to_exit()

    def _timeout(self) -> int | None:
        """Milliseconds until the next check or offer; None: until a message."""
        if self.leaders or self.orphaned:
            due = self.checked_at + CHECK_INTERVAL
        elif self.offered_for != self.received:
            due = self.idle_since + IDLE_AFTER
        else:
            return None
        return max(0, round((due - time.monotonic()) * 1000))

    def _receive(self) -> bool:
        """Take every registration waiting; False at end of file (the worker is gone)."""
        while True:
            try:
                data, fds, _flags, _address = socket.recv_fds(self.channel, MESSAGE_SIZE, 1)  # non-blocking
            except BlockingIOError:
                return True
            except ConnectionResetError:  # it exited with our offer unread
                return False
            if not data and not fds:
                return False
            if len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                continue
            self.received += 1
            self.leaders[fds[0]] = int(data)
            self.exits.register(fds[0], select.POLLIN)

    def _check(self) -> None:
        """Every CHECK_INTERVAL: forget the leaders that exited, then the groups left empty."""
        now = time.monotonic()
        if now - self.checked_at < CHECK_INTERVAL:
            return
        self.checked_at = now
        for pidfd, _events in self.exits.poll(0):
            self.exits.unregister(pidfd)
            os.close(pidfd)
            self.orphaned.add(self.leaders.pop(pidfd))
        self.orphaned = {group for group in self.orphaned if group_lives(group)}

    def _offer_to_exit(self) -> None:
        if self.leaders or self.orphaned:
            self.idle_since = time.monotonic()
            return
        if self.offered_for == self.received or time.monotonic() - self.idle_since < IDLE_AFTER:
            return
        self.offered_for = self.received
        with contextlib.suppress(OSError):  # the worker reads it, or is gone and we see the end of file
            self.channel.send(idle_offer(self.received), socket.MSG_DONTWAIT)

    def kill_all(self) -> None:
        """SIGKILL every group first (its id is pinned while a member lives),
        then every leader through its pidfd (a pty leader before its setsid
        is not yet in its own group)."""
        for group in [*self.leaders.values(), *self.orphaned]:
            self._kill_group(group)
        for pidfd in self.leaders:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)

    def _kill_group(self, group: int) -> None:
        if group <= 1 or group in self.spared:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)


def group_lives(group: int) -> bool:
    """A group we may still kill: one with a member (a zombie leader counts)
    that we are allowed to signal, as all of ours are."""
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _raise_descriptor_limit() -> None:
    """One pidfd per live process of the worker."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str]) -> None:
    worker_group = int(argv[2])
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        # Only the worker's end of file ends a guardian: a stop signal sent to
        # every process (systemd, a terminal) must not end it before its worker.
        signal.signal(signum, signal.SIG_IGN)
    _raise_descriptor_limit()
    channel = socket.socket(fileno=0)
    channel.setblocking(False)  # recv_fds drops its flags argument before Python 3.12
    Guardian(channel, {worker_group, os.getpgrp()}).run()


if __name__ == "__main__":
    main(sys.argv)
