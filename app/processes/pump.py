"""One pipe (or the pseudo-terminal) of a child, read cooperatively to end of file.

Each chunk goes to the process that owns the pump, which publishes it to
its sinks; a sink that blocks blocks the pump, so a slow client slows the
child through its pipe and nothing is buffered without bound.  After a
large chunk the pump reads (and sends) the next one in a bulk turn, so
that small (interactive) output is never queued behind it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from typing import Any, Protocol

import gevent
from gevent import get_hub

from app.processes.forkexec import close_fd
from app.processes.turns import BULK_CHUNK, bulk_turns

READ_SIZE = 256 * 1024
FIRST_READ_SIZE = 16 * 1024
PIPE_SIZE = 1024 * 1024
F_SETPIPE_SZ = 1031


class PumpOwner(Protocol):
    """What a pump hands its chunks and its end to: the :class:`~app.processes.process.Process`."""

    def publish(self, stream: str, data: bytes) -> None: ...

    def stream_ended(self, stream: str) -> None: ...

    def pump_done(self) -> None: ...


class _Cut(Exception):
    """Raised into a pump waiting on a pipe that must stop being read."""


class Pump:
    """Copies one pipe of the child to the sink until end of file.

    One libev watcher serves every wait (``gevent.os.nb_read`` makes and
    drops one per call: two epoll_ctl calls per chunk).  The read size
    follows the stream: small while chunks are small, so an interactive
    echo costs no large buffer, and up to ``READ_SIZE`` while reads fill it.
    """

    def __init__(self, process: PumpOwner, fd: int, stream: str) -> None:
        self._process = process
        self._fd = fd
        self.stream = stream
        self.at_eof = False
        self.done = False
        self._cut = False
        self._waiting = False
        self._left_after_cut = PIPE_SIZE
        self._read_size = FIRST_READ_SIZE
        self._bulk = False  # the last chunk was large: read (and send) the next in a bulk turn
        self._drained = True  # the last read emptied the pipe: wait before reading, not after an EAGAIN
        self._watcher: Any = None
        self.greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self.greenlet = gevent.spawn(self._run)

    def enlarge_pipe(self) -> None:
        """Fewer wake-ups per megabyte; the kernel may refuse, which is harmless."""
        with contextlib.suppress(OSError):
            fcntl.fcntl(self._fd, F_SETPIPE_SZ, PIPE_SIZE)

    def cut(self) -> None:
        """Stop waiting for end of file: forward what the pipe holds, then stop."""
        self._cut = True
        if self._waiting and self.greenlet is not None:
            self.greenlet.kill(_Cut, block=False)

    def _run(self) -> None:
        try:
            while data := self._read():
                self._process.publish(self.stream, data)
            self._process.stream_ended(self.stream)
        finally:
            if self._watcher is not None:
                self._watcher.close()
            close_fd(self._fd)
            self.done = True
            self._process.pump_done()

    def _read(self) -> bytes:
        if self._cut:
            return self._read_what_is_left()
        self._waiting = True
        try:
            data = self._read_when_ready()
        except _Cut:
            return self._read_what_is_left()
        except OSError as error:
            if error.errno != errno.EIO:
                raise
            data = b""  # a pseudo-terminal whose last slave closed: end of file
        finally:
            self._waiting = False
        if not data:
            self.at_eof = True
        return data

    def _read_when_ready(self) -> bytes:
        while True:
            if self._drained:
                self._wait_readable()
            size = self._read_size
            if self._bulk:
                turns = bulk_turns()
                turns.wait()
                size = turns.slice_limit(size)
            try:
                data = os.read(self._fd, size)
            except BlockingIOError:
                self._drained = True
                continue
            self._drained = len(data) < size  # a short read took all the pipe held
            self._bulk = len(data) >= BULK_CHUNK
            if data and not self._bulk:
                bulk_turns().note_interactive()
            if len(data) == size:
                self._read_size = min(self._read_size * 2, READ_SIZE)
            elif len(data) < self._read_size // 4:
                self._read_size = max(self._read_size // 2, FIRST_READ_SIZE)
            return data

    def _wait_readable(self) -> None:
        if self._watcher is None:
            self._watcher = get_hub().loop.io(self._fd, 1)
        get_hub().wait(self._watcher)
        self._drained = False

    def _read_what_is_left(self) -> bytes:
        """After a cut: what the pipe holds now, at most one pipe's worth."""
        try:
            data = os.read(self._fd, min(READ_SIZE, self._left_after_cut))
        except (BlockingIOError, OSError):
            return b""
        self._left_after_cut -= len(data)
        return data
