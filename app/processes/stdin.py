"""A child's stdin: written in order, never blocking the connection's reader."""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass

import gevent
from gevent.event import AsyncResult, Event
from gevent.os import nb_write

from app.errors import ErrorCode, RpcError
from app.processes.forkexec import close_fd


@dataclass
class _Chunk:
    """Queued stdin bytes (``data is None`` means: close stdin here)."""

    data: bytes | None
    result: AsyncResult
    reported: int = 0  # the byte count the answer reports, a fast-path prefix included


class StdinFeeder:
    """Writes to the child's stdin in order, off the connection's reader.

    ``write`` answers at once when the pipe takes every byte (the usual case);
    otherwise the rest is queued for a writer greenlet and an AsyncResult is
    returned, set once the bytes are in the pipe.  It never blocks the
    connection's reader: once ``capacity`` bytes wait, further writes are
    refused (LIMIT_EXCEEDED) until earlier ones are answered, which is the
    flow control a client that writes faster than the child reads must use.
    """

    def __init__(self, fd: int, capacity: int) -> None:
        self._fd = fd
        self._capacity = capacity
        self._queue: deque[_Chunk] = deque()
        self._queued_bytes = 0
        self._work = Event()
        self.closed = False
        self._fd_open = True
        self._greenlet: gevent.Greenlet | None = None  # started by the first queued chunk

    def write(self, data: bytes) -> dict[str, int] | AsyncResult:
        self._ensure_open()
        total = len(data)
        if not self._queue:
            data = data[self._write_now(data) :]
            if not data:
                return {"written": total}
        if self._queued_bytes and self._queued_bytes + len(data) > self._capacity:
            raise RpcError(
                ErrorCode.LIMIT_EXCEEDED,
                f"stdin buffer full: {self._queued_bytes} bytes wait for the process to read them; "
                "wait for earlier writes to be answered, then send this one again",
                {"queued": self._queued_bytes},
                refused_data=True,
            )
        return self._enqueue(_Chunk(data, AsyncResult(), total))

    def close(self) -> AsyncResult:
        self._ensure_open()
        self.closed = True
        return self._enqueue(_Chunk(None, AsyncResult()))

    def abort(self) -> None:
        """The process is gone: fail what is queued and close the pipe.

        Called from the hub, so it never blocks: a writer greenlet (which
        exists whenever something is queued) is stopped from another one."""
        self.closed = True
        if self._greenlet is None:
            self._close_fd()
        else:
            gevent.spawn(self._stop_writer)

    def _stop_writer(self) -> None:
        assert self._greenlet is not None
        self._greenlet.kill()
        self._close_fd()
        error = RpcError(ErrorCode.PROCESS_EXITED, "the process has exited", refused_data=True)
        while self._queue:
            self._queue.popleft().result.set_exception(error)

    def _ensure_open(self) -> None:
        if self.closed:
            raise RpcError(ErrorCode.PROCESS_EXITED, "stdin is closed")

    def _write_now(self, data: bytes) -> int:
        """Write what the pipe takes without waiting."""
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError as error:
            self.closed = True
            raise _stdin_closed(error) from None

    def _enqueue(self, chunk: _Chunk) -> AsyncResult:
        self._queue.append(chunk)
        self._queued_bytes += len(chunk.data or b"")
        self._work.set()
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)
        return chunk.result

    def _run(self) -> None:
        try:
            while True:
                while not self._queue:
                    self._work.clear()
                    self._work.wait()
                chunk = self._queue[0]
                if chunk.data is None:
                    self._queue.popleft()
                    chunk.result.set({})
                    return
                self._write_one(chunk, chunk.data)
        finally:
            self._close_fd()

    def _close_fd(self) -> None:
        if self._fd_open:
            self._fd_open = False
            close_fd(self._fd)

    def _write_one(self, chunk: _Chunk, data: bytes) -> None:
        try:
            _write_all(self._fd, data)
            chunk.result.set({"written": chunk.reported})
        except OSError as error:
            self.closed = True
            chunk.result.set_exception(_stdin_closed(error))
        finally:
            self._queue.popleft()
            self._queued_bytes -= len(data)


def _stdin_closed(error: OSError) -> RpcError:
    message = f"stdin is closed: {error.strerror}"
    return RpcError(ErrorCode.PROCESS_EXITED, message, {"errno": error.errno}, refused_data=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[nb_write(fd, view) :]
