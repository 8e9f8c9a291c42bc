"""A running child process: its pumps, its subscribers, its signals and its exit.

A :class:`Process` is byte-level and protocol-free.  Its pumps (app.processes.pump) read the
child's pipes (or its pseudo-terminal) cooperatively and publish each chunk
to every subscribed :class:`OutputSink`, blocking while a sink blocks (a
slow client therefore slows the child through its pipe, and nothing is
buffered without bound).  A kept process also records its output in a
bounded :class:`~app.processes.history.History`, so a client can come back and replay
it.  The exit status is delivered only after every stream reached end of
file, or after ``drain_timeout`` when a grandchild keeps a pipe open.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import time
from collections.abc import Callable
from typing import Any

import gevent
from gevent import get_hub
from gevent.event import AsyncResult, Event

from app import metrics
from app.errors import ErrorCode, RpcError
from app.processes.environment import server_directory
from app.processes.forkexec import close_fd
from app.processes.history import History, Replay
from app.processes.launcher import LaunchSpec, launch, set_window_size
from app.processes.options import Limits, Options
from app.processes.pump import Pump
from app.processes.reaper import ChildWatch, Reaped, reaper
from app.processes.sinks import OutputSink, Subscription, Tap
from app.processes.status import exit_status
from app.processes.stdin import StdinFeeder
from app.processes.window import Size, Window

GROUP_POLL_INTERVAL = 0.02
END_OF_TRANSMISSION = b"\x04"  # a terminal's end of file, ^D


class Process:
    """One child process, leader of its own session and process group."""

    def __init__(self, proc_id: int, spec: LaunchSpec, *, sink: OutputSink, limits: Limits, options: Options) -> None:
        self.id = proc_id
        self.argv = spec.argv
        self.cwd = spec.cwd or server_directory()
        self.options = options
        self.pty = spec.pty is not None
        self.window = Window(options.size_rule, spec.pty) if spec.pty is not None else None
        self.on_resize: Callable[[Process], None] | None = None  # a cluster tells the other nodes
        self._sinks: list[OutputSink] = [sink]
        self._uncounted: list[OutputSink] = []  # sinks that are no client (a cluster's mirror, a recording)
        self.taps: list[Tap] = []
        self.recording: str | None = None  # its recording's id (app.recording)
        self._limits = limits
        self._child: ChildWatch | None = None
        self.started_at = time.time()
        self._started = time.monotonic()
        try:
            launched = launch(spec, on_forked=self._watch)
        except OSError:
            if self._child is not None:
                self._child.wait_reaped()  # exec failed: the child has already exited
            raise
        self.pid = launched.pid
        self.pgid = launched.pid  # the child leads its own session and group
        self.timed_out = False
        self.status: dict[str, Any] | None = None
        self.when_finished: list[Callable[[Process], None]] = []
        self._finished = Event()
        self._output_begun = False
        self._finishing = False
        self._incomplete = False  # the drain bound cut a pipe short
        self._drain_timer: Any = None
        self._duration = 0.0
        self._terminal = launched.terminal
        self.stdin = StdinFeeder(launched.stdin, limits.stdin_buffer_bytes) if launched.stdin is not None else None
        self._pumps = [Pump(self, launched.stdout, "stdout")]
        if launched.stderr is not None:
            self._pumps.append(Pump(self, launched.stderr, "stderr"))
        self.streams = [pump.stream for pump in self._pumps]
        self.offsets = dict.fromkeys(self.streams, 0)
        self._ended: set[str] = set()
        self.history = (
            {stream: History(options.history_bytes) for stream in self.streams} if options.history_bytes else {}
        )
        if not self.pty:
            for pump in self._pumps:
                pump.enlarge_pipe()
        self._timer = gevent.spawn_later(options.timeout, self._time_out) if options.timeout else None
        assert self._child is not None  # set by _watch before launch returned
        self._child.when_reaped(self._child_reaped)

    def _watch(self, pid: int) -> None:
        self._child = reaper.watch(pid)

    @property
    def running(self) -> bool:
        return self.status is None

    @property
    def reaped(self) -> bool:
        return self._child is not None and self._child.reaped

    @property
    def subscribers(self) -> int:
        """The connections (and collectors) that receive the output."""
        return len(self._sinks) - sum(sink in self._sinks for sink in self._uncounted)

    def begin_output(self) -> None:
        """Start streaming; called once the ``start`` answer has been sent
        (or when the connection is gone and the answer never will be)."""
        for pump in self._pumps:
            if pump.greenlet is None:
                pump.start()
        self._output_begun = True
        if self.reaped:
            self._bound_the_drain()

    def info(self) -> dict[str, Any]:
        return {
            "proc": self.id,
            "pid": self.pid,
            "pgid": self.pgid,
            "name": self.options.name,
            "argv": self.argv,
            "command": self.options.command or shlex.join(self.argv),
            "cwd": self.cwd,
            "state": "running" if self.running else "exited",
            "started_at": self.started_at,
            "exit": self.status,
            "pty": self.pty,
            "size": self.window.shown if self.window else None,
            "size_rule": self.window.rule if self.window else None,
            "on_disconnect": "keep" if self.options.keep else "kill",
            "attached": self.subscribers,
            "offsets": dict(self.offsets),
            "recording": self.recording,
        }

    # -- output fan-out ---------------------------------------------------------

    def publish(self, stream: str, data: bytes) -> None:
        offset = self.offsets[stream]
        self.offsets[stream] = offset + len(data)
        metrics.OUTPUT_BY_STREAM[stream].add(len(data))
        if self.history:
            self.history[stream].append(data)
        for sink in list(self._sinks):
            sink.output(self, stream, data, offset)

    def stream_ended(self, stream: str) -> None:
        self._ended.add(stream)
        for sink in list(self._sinks):
            sink.end_of_stream(self, stream)

    @property
    def sinks(self) -> tuple[OutputSink, ...]:
        return tuple(self._sinks)

    def subscribe(self, sink: OutputSink, offsets: dict[str, int], *, counted: bool = True) -> Subscription:
        """Add ``sink``; say what it must replay first.  Never yields, so no
        chunk can fall between the replay and the live stream.  An uncounted
        sink is not one of the ``attached`` clients."""
        replays = {}
        for stream in self.streams:
            wanted = offsets.get(stream, 0)
            if stream in self.history:
                replays[stream] = self.history[stream].read_from(wanted)
            else:
                replays[stream] = Replay(b"", self.offsets[stream], wanted < self.offsets[stream])
        live = self.status is None
        if live and sink not in self._sinks:
            self._sinks.append(sink)
            if not counted:
                self._uncounted.append(sink)
        return Subscription(replays, frozenset(self._ended), live)

    def unsubscribe(self, sink: OutputSink) -> None:
        with contextlib.suppress(ValueError):
            self._sinks.remove(sink)

    # -- control ------------------------------------------------------------------

    def write_stdin(self, data: bytes) -> dict[str, int] | AsyncResult:
        """Queue ``data`` for stdin: answered now, or once it is in the pipe."""
        self._refuse_once_reaped()
        if self.stdin is None:
            raise RpcError(ErrorCode.PROCESS_EXITED, f"process {self.id} was started with stdin: null")
        written = self.stdin.write(data)
        self._tap_input(data)
        return written

    def _tap_input(self, data: bytes) -> None:
        for tap in self.taps:
            tap.input(data)

    def close_stdin(self) -> dict[str, Any] | AsyncResult:
        """End of input after what is queued; on a terminal, that is a ^D."""
        self._refuse_once_reaped()
        if self.stdin is None:
            return {}
        if self.pty:
            self.stdin.write(END_OF_TRANSMISSION)
            self._tap_input(END_OF_TRANSMISSION)
            return {}
        return self.stdin.close()

    def _refuse_once_reaped(self) -> None:
        if self.reaped:
            raise RpcError(ErrorCode.PROCESS_EXITED, f"process {self.id} has exited")

    def resize(self, rows: int, cols: int, controller: str = "") -> dict[str, Any]:
        """``controller`` (a connection) asks for this size; the terminal takes what its rule picks."""
        if self.window is None:
            raise RpcError(ErrorCode.INVALID_PARAMS, f"Invalid params: process {self.id} has no pty to resize")
        if self.reaped or self._terminal is None:
            raise RpcError(ErrorCode.PROCESS_EXITED, "the process has exited")
        return self._take_size(self.window.set(controller, (rows, cols)))

    def forget_size(self, *controllers: str) -> dict[str, Any]:
        """``controllers`` detached or left: their sizes stop counting."""
        if self.window is None or self.reaped or self._terminal is None:
            return {}
        return self._take_size(self.window.forget(*controllers))

    def _take_size(self, size: Size) -> dict[str, Any]:
        assert self.window is not None and self._terminal is not None
        if size != self.window.size:
            set_window_size(self._terminal, *size)  # the kernel sends SIGWINCH
            self.window.size = size
            for tap in self.taps:
                tap.resized(*size)
            if self.on_resize is not None:
                self.on_resize(self)
        return {"size": self.window.shown}

    def send_signal(self, signum: int, group: bool = True) -> dict[str, Any]:
        """Signal the group (or the leader only); refused once it is reaped."""
        if self.reaped or self._child is None:
            raise RpcError(ErrorCode.PROCESS_EXITED, "the process has exited")
        if group:
            self._signal_group(signum)
        else:
            with contextlib.suppress(ProcessLookupError):
                self._child.send_signal(signum)
        return {}

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
        if not self.group_alive():
            return  # never signal a group id that may already belong to someone else
        self._signal_group(signum)
        deadline = time.monotonic() + grace
        if self._child is not None:
            self._child.wait_reaped(grace)
        while self.group_alive() and time.monotonic() < deadline:
            gevent.sleep(GROUP_POLL_INTERVAL)
        if self.group_alive():
            self._signal_group(signal.SIGKILL)

    def kill_group(self) -> None:
        """SIGKILL the group now, if it still exists."""
        self.signal_group(signal.SIGKILL)

    def signal_group(self, signum: int) -> None:
        """Signal the group if anything of it is left, even after the leader was reaped
        (its grandchildren may remain), unlike :meth:`send_signal`."""
        if self.group_alive():
            self._signal_group(signum)

    def group_alive(self) -> bool:
        """Is anything of its process group left?  Until reaped, the leader is."""
        if not self.reaped:
            return True
        try:
            os.killpg(self.pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def _signal_group(self, signum: int) -> None:
        """killpg is safe while the leader is unreaped: it holds the group id.
        Right after a pty start the group may not exist yet (``setsid -c``
        creates it after its exec): then the leader is its only member."""
        try:
            os.killpg(self.pgid, signum)
        except ProcessLookupError:
            if self._child is not None and not self.reaped:
                with contextlib.suppress(ProcessLookupError):
                    self._child.send_signal(signum)
        except PermissionError:
            pass

    def _time_out(self) -> None:
        self.timed_out = True
        self.terminate()

    # -- the end ----------------------------------------------------------------------
    #
    # The exit is delivered once the child is reaped and every pump has read
    # to end of file, by whichever of the two comes last: the reaper's
    # callback (in the hub, so it hands over to a greenlet) or the last pump.

    def _child_reaped(self, reaped: Reaped) -> None:
        """In the hub, right after the reap: must never block."""
        self._duration = time.monotonic() - self._started
        if self._timer is not None and not self.timed_out:
            self._timer.kill(block=False)
        if self.stdin is not None:
            self.stdin.abort()
        if self._ready_to_finish():
            self._finishing = True
            gevent.spawn(self._finish)
        elif self._output_begun:
            self._bound_the_drain()

    def pump_done(self) -> None:
        """A pump stopped (its greenlet, after closing its pipe)."""
        if self.reaped and self._ready_to_finish():
            self._finishing = True
            self._finish()

    def _ready_to_finish(self) -> bool:
        return not self._finishing and all(pump.done for pump in self._pumps)

    def _bound_the_drain(self) -> None:
        """A grandchild may hold a pipe open for ever: after ``drain_timeout``
        from the exit (or from when streaming began, if later: output held
        back until the ``start`` answer is sent is not lost, only late), cut
        the pipes short and report ``output_incomplete``."""
        if self._drain_timer is None:
            self._drain_timer = get_hub().loop.timer(self._limits.drain_timeout)
            self._drain_timer.start(self._cut_pumps)

    def _cut_pumps(self) -> None:
        for pump in self._pumps:
            if not pump.at_eof:
                self._incomplete = True
                pump.cut()

    def _finish(self) -> None:
        assert self._child is not None and self._child.result is not None
        if self._drain_timer is not None:
            self._drain_timer.close()
        if self._terminal is not None:
            close_fd(self._terminal)
            self._terminal = None
        self.status = exit_status(
            self.id, self.pid, self.timed_out, self._child.result, self._duration, self._incomplete
        )
        for sink in list(self._sinks):
            sink.exited(self)
        self._sinks.clear()  # nothing more will come; let the connections go
        self._finished.set()
        for callback in self.when_finished:
            callback(self)
