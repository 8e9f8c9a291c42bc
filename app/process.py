"""A running child process: its pumps, its stdin, its signals and its exit.

A :class:`Process` is byte-level and protocol-free.  Its pumps read the
child's pipes cooperatively and hand each chunk to an :class:`OutputSink`,
blocking while the sink blocks (a slow client therefore slows the child
through its pipe, and nothing is buffered without bound).  The exit status
is delivered only after both pipes reached end of file, or after
``drain_timeout`` when a grandchild keeps a pipe open.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import gevent
from gevent.event import AsyncResult, Event
from gevent.os import nb_read, nb_write

from app.launcher import LaunchSpec, close_fd, launch
from app.protocol import ErrorCode, RpcError
from app.reaper import ChildWatch, Reaped, reaper

READ_SIZE = 256 * 1024
PIPE_SIZE = 1024 * 1024
GROUP_POLL_INTERVAL = 0.02
F_SETPIPE_SZ = 1031


class OutputSink(Protocol):
    """Where a process's output and exit go (a connection, or a collector)."""

    def output(self, process: Process, stream: str, data: bytes) -> None: ...

    def end_of_stream(self, process: Process, stream: str) -> None: ...

    def exited(self, process: Process) -> None: ...


@dataclass(frozen=True)
class Limits:
    kill_grace: float
    drain_timeout: float
    stdin_buffer_bytes: int


class _Cut(Exception):
    """Raised into a pump waiting on a pipe that must stop being read."""


class Pump:
    """Copies one pipe of the child to the sink until end of file."""

    def __init__(self, process: Process, fd: int, stream: str) -> None:
        self._process = process
        self._fd = fd
        self.stream = stream
        self.at_eof = Event()
        self._cut = False
        self._waiting = False
        self._left_after_cut = PIPE_SIZE
        self.greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self.greenlet = gevent.spawn(self._run)

    def cut(self) -> None:
        """Stop waiting for end of file: forward what the pipe holds, then stop."""
        self._cut = True
        if self._waiting and self.greenlet is not None:
            self.greenlet.kill(_Cut, block=False)

    def _run(self) -> None:
        sink = self._process.sink
        try:
            while data := self._read():
                sink.output(self._process, self.stream, data)
            sink.end_of_stream(self._process, self.stream)
        finally:
            self.at_eof.set()
            close_fd(self._fd)

    def _read(self) -> bytes:
        if self._cut:
            return self._read_what_is_left()
        self._waiting = True
        try:
            data = nb_read(self._fd, READ_SIZE)
        except _Cut:
            return self._read_what_is_left()
        finally:
            self._waiting = False
        if not data:
            self.at_eof.set()
        return data

    def _read_what_is_left(self) -> bytes:
        """After a cut: what the pipe holds now, at most one pipe's worth."""
        try:
            data = os.read(self._fd, min(READ_SIZE, self._left_after_cut))
        except BlockingIOError:
            return b""
        self._left_after_cut -= len(data)
        return data


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
        """The process is gone: fail what is queued and close the pipe."""
        self.closed = True
        if self._greenlet is not None:
            self._greenlet.kill()
        self._close_fd()
        error = RpcError(ErrorCode.PROCESS_EXITED, "the process has exited")
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
    return RpcError(ErrorCode.PROCESS_EXITED, f"stdin is closed: {error.strerror}", {"errno": error.errno})


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[nb_write(fd, view) :]


class Process:
    """One child process, leader of its own session and process group."""

    def __init__(
        self,
        proc_id: int,
        spec: LaunchSpec,
        *,
        sink: OutputSink,
        limits: Limits,
        name: str | None = None,
        encoding: str = "text",
        binary: bool = False,
        timeout: float | None = None,
    ) -> None:
        self.id = proc_id
        self.argv = spec.argv
        self.cwd = spec.cwd or os.getcwd()
        self.name = name
        self.encoding = encoding
        self.binary = binary
        self.sink = sink
        self._limits = limits
        self._child: ChildWatch | None = None
        self.started_at = time.time()
        self._started = time.monotonic()
        try:
            launched = launch(spec, on_forked=self._watch)
        except OSError:
            if self._child is not None:
                self._child.reap()  # exec failed: the child has already exited
            raise
        self.pid = launched.pid
        self.pgid = launched.pid  # call_setsid: the child leads its session and group
        self.timed_out = False
        self.status: dict[str, Any] | None = None
        self._finished = Event()
        self._output_begun = Event()
        self.stdin = StdinFeeder(launched.stdin, limits.stdin_buffer_bytes) if launched.stdin is not None else None
        self._pumps = [Pump(self, launched.stdout, "stdout")]
        if launched.stderr is not None:
            self._pumps.append(Pump(self, launched.stderr, "stderr"))
        for pump in self._pumps:
            _enlarge_pipe(pump._fd)
        self._timer = gevent.spawn_later(timeout, self._time_out) if timeout else None
        gevent.spawn(self._supervise)

    def _watch(self, pid: int) -> None:
        self._child = reaper.watch(pid)

    @property
    def running(self) -> bool:
        return self.status is None

    @property
    def reaped(self) -> bool:
        return self._child is not None and self._child.reaped

    def begin_output(self) -> None:
        """Start streaming; called once the ``start`` answer has been sent
        (or when the connection is gone and the answer never will be)."""
        for pump in self._pumps:
            if pump.greenlet is None:
                pump.start()
        self._output_begun.set()

    def info(self) -> dict[str, Any]:
        return {
            "proc": self.id,
            "pid": self.pid,
            "pgid": self.pgid,
            "name": self.name,
            "argv": self.argv,
            "cwd": self.cwd,
            "state": "running" if self.running else "exited",
            "started_at": self.started_at,
            "exit": self.status,
        }

    def send_signal(self, signum: int, group: bool = True) -> None:
        """Signal the group (or the leader only); refused once it is reaped."""
        if self.reaped:
            raise RpcError(ErrorCode.PROCESS_EXITED, "the process has exited")
        try:
            if group:
                os.killpg(self.pgid, signum)
            else:
                os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """The exit status, once every byte of output has been delivered."""
        if not self._finished.wait(timeout):
            raise RpcError(ErrorCode.TIMEOUT, f"the process is still running after {timeout} s")
        assert self.status is not None
        return self.status

    def stop(self, signum: int = signal.SIGTERM, grace: float | None = None) -> dict[str, Any]:
        """Signal the group, SIGKILL what is left after ``grace``, return the status."""
        self.terminate(signum, self._limits.kill_grace if grace is None else grace)
        return self.wait()

    def terminate(self, signum: int = signal.SIGTERM, grace: float | None = None) -> None:
        """Signal the whole group, then SIGKILL it if any of it outlives ``grace``."""
        grace = self._limits.kill_grace if grace is None else grace
        if not self._group_alive():
            return  # never signal a group id that may already belong to someone else
        self._signal_group(signum)
        deadline = time.monotonic() + grace
        if self._child is not None:
            self._child.wait_reaped(grace)
        while self._group_alive() and time.monotonic() < deadline:
            gevent.sleep(GROUP_POLL_INTERVAL)
        if self._group_alive():
            self._signal_group(signal.SIGKILL)

    def _group_alive(self) -> bool:
        if not self.reaped:
            return True
        try:
            os.killpg(self.pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signum)

    def _time_out(self) -> None:
        self.timed_out = True
        self.terminate()

    def _supervise(self) -> None:
        assert self._child is not None
        reaped = self._child.reap()
        duration = time.monotonic() - self._started
        if self._timer is not None and not self.timed_out:
            self._timer.kill(block=False)
        if self.stdin is not None:
            self.stdin.abort()
        incomplete = self._drain()
        self.status = exit_status(self, reaped, duration, incomplete)
        self.sink.exited(self)
        self._finished.set()

    def _drain(self) -> bool:
        """Wait for the pumps; True when the drain bound cut a pipe short.

        The bound counts from when streaming began: output held back until
        the ``start`` answer is sent is not lost, only late.
        """
        self._output_begun.wait()
        gevent.wait([pump.at_eof for pump in self._pumps], timeout=self._limits.drain_timeout)
        incomplete = False
        for pump in self._pumps:
            if not pump.at_eof.is_set():
                incomplete = True
                pump.cut()
        gevent.wait([pump.at_eof for pump in self._pumps])
        for pump in self._pumps:
            if pump.greenlet is not None:
                pump.greenlet.join()
        return incomplete


def exit_status(process: Process, reaped: Reaped, duration: float, incomplete: bool) -> dict[str, Any]:
    """The ``exit`` notification's params, from a ``wait4`` status and rusage."""
    status = reaped.status
    signaled = os.WIFSIGNALED(status)
    signum = os.WTERMSIG(status) if signaled else None
    return {
        "proc": process.id,
        "pid": process.pid,
        "code": None if signaled else os.waitstatus_to_exitcode(status),
        "signal": signal_name(signum) if signum else None,
        "core_dumped": bool(signaled and os.WCOREDUMP(status)),
        "timed_out": process.timed_out,
        "duration": round(duration, 6),
        "output_incomplete": incomplete,
        "rusage": {
            "utime": reaped.rusage.ru_utime,
            "stime": reaped.rusage.ru_stime,
            "maxrss_kb": reaped.rusage.ru_maxrss,
        },
    }


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


def _enlarge_pipe(fd: int) -> None:
    """Fewer wake-ups per megabyte; the kernel may refuse, which is harmless."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
