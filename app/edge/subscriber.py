"""The output side of one connection: process output in, frames out.

A connection receives the output of the processes it started and of those
it attached to, each in the format this connection chose for it (JSON text,
base64 or binary frames: the format belongs to the subscriber, not to the
process, so the console can follow what the CLI started).  Each process gets
a lock here, so that a replay from the history and the live stream that
follows it can never interleave: the attach holds the lock from subscribing
until its replay is sent, and live chunks for that process wait for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import gevent
from gevent.lock import Semaphore
from simple_websocket import ConnectionClosed

from app.errors import ErrorCode, RpcError
from app.processes.history import Replay
from app.processes.sinks import Source, Subscription
from app.protocol import jsonrpc as protocol
from app.protocol.output import OutputEncoder, OutputFormat
from app.protocol.screen import render
from app.registry.base import ProcessHandle

REPLAY_CHUNK = 256 * 1024

Notify = Callable[[str, dict[str, Any]], None]
SendBinary = Callable[[bytes, bytes], None]


class Subscriber:
    """The :class:`~app.process.OutputSink` of one connection."""

    def __init__(self, notify: Notify, send_binary: SendBinary) -> None:
        self._notify = notify
        self._send_binary = send_binary
        self._encoders: dict[tuple[int, str], OutputEncoder] = {}
        self._formats: dict[int, OutputFormat] = {}
        self._locks: dict[int, Semaphore] = {}
        self._replaying: set[int] = set()  # attaches whose replay waits for their answer
        self.processes: dict[int, ProcessHandle] = {}  # whose output this connection receives

    def subscribed(self, process: ProcessHandle) -> None:
        """``process`` was started with this subscriber as its first sink."""
        self.processes[process.id] = process
        self._formats[process.id] = OutputFormat.chosen(process)

    def attach(
        self, process: ProcessHandle, offsets: dict[str, int], output_format: OutputFormat, snapshot: bool = False
    ) -> tuple[dict[str, Any], Callable[[], None]]:
        """Subscribe from ``offsets``; return the answer and the replay to run once it is sent.

        With ``snapshot``, a terminal's stdout history is not replayed but
        rendered as its current screen (one ``screen`` notification)."""
        if process.id in self._replaying:
            message = f"Invalid params: proc: an attach of process {process.id} is already in progress"
            raise RpcError(ErrorCode.INVALID_PARAMS, message)
        screen = snapshot and bool(process.info().get("pty"))
        if screen:
            offsets = {"stdout": 0}  # everything held: the screen is rebuilt from it
        self._replaying.add(process.id)
        lock = self._lock(process.id)
        lock.acquire()
        try:
            self._unsubscribe(process)
            self._formats[process.id] = output_format
            subscription = process.subscribe(self, offsets)  # a remote one may fail (Redis down)
        except BaseException:
            self._replaying.discard(process.id)
            lock.release()
            raise
        if subscription.live:
            self.processes[process.id] = process

        def replay() -> None:
            try:
                for stream, held in subscription.replays.items():
                    if screen and stream == "stdout":
                        self._send_screen(process, held.data, held.offset + len(held.data))
                        continue
                    for start in range(0, len(held.data), REPLAY_CHUNK):
                        piece = held.data[start : start + REPLAY_CHUNK]
                        self._emit(process, stream, piece, held.offset + start)
                for stream in subscription.ended:
                    self._flush(process, stream)
                if not subscription.live:
                    self._notify("exit", process.status or {})
            finally:
                self._replaying.discard(process.id)
                lock.release()

        return _answer(process, subscription, screen), replay

    def _send_screen(self, process: ProcessHandle, history: bytes, offset: int) -> None:
        """The terminal's current screen, then the live output from ``offset``."""
        rows, cols = _window(process)
        data = render(history, rows, cols, pause=lambda: gevent.sleep(0))
        self._notify("screen", {"proc": process.id, "data": data, "offset": offset, "rows": rows, "cols": cols})

    def detach(self, process: ProcessHandle) -> None:
        self._unsubscribe(process)

    def notice(self, method: str, params: dict[str, Any]) -> None:
        """A notification about a process this connection follows (a recording that failed)."""
        self._notify(method, params)

    def detach_all(self) -> None:
        for process in list(self.processes.values()):
            self._unsubscribe(process)

    def _unsubscribe(self, process: ProcessHandle) -> None:
        process.unsubscribe(self)
        self.processes.pop(process.id, None)
        for stream in process.streams:
            self._encoders.pop((process.id, stream), None)

    def _lock(self, proc: int) -> Semaphore:
        lock = self._locks.get(proc)
        if lock is None:
            lock = self._locks[proc] = Semaphore()
        return lock

    # -- OutputSink ---------------------------------------------------------------

    def output(self, process: Source, stream: str, data: bytes, offset: int) -> None:
        with self._lock(process.id):
            self._emit(process, stream, data, offset)

    def end_of_stream(self, process: Source, stream: str) -> None:
        with self._lock(process.id):
            self._flush(process, stream)

    def exited(self, process: Source) -> None:
        with self._lock(process.id):
            self._notify("exit", process.status or {})
        self.processes.pop(process.id, None)
        self._locks.pop(process.id, None)
        self._formats.pop(process.id, None)

    # -- encoding ---------------------------------------------------------------------

    def _emit(self, process: Source, stream: str, data: bytes, offset: int) -> None:
        output_format = self._formats.get(process.id) or OutputFormat.chosen(process)
        if output_format.binary:
            with contextlib.suppress(ConnectionClosed):
                self._send_binary(protocol.binary_output_header(stream, process.id), data)
            return
        key = (process.id, stream)
        encoder = self._encoders.get(key)
        if encoder is not None and encoder.next_offset != offset:
            self._flush(process, stream)  # a gap (a remote reader behind its history): offsets stay true
            encoder = None
        if encoder is None:
            encoder = self._encoders[key] = OutputEncoder(process.id, stream, output_format.encoding, offset)
        for params in encoder.feed(data):
            self._notify("output", params)

    def _flush(self, process: Source, stream: str) -> None:
        encoder = self._encoders.pop((process.id, stream), None)
        for params in encoder.finish() if encoder else []:
            self._notify("output", params)


def _window(process: ProcessHandle) -> tuple[int, int]:
    """The terminal's size now (a remote process: as its record last said)."""
    size = process.info().get("size") or {"rows": 24, "cols": 80}
    return size["rows"], size["cols"]


def _answer(process: ProcessHandle, subscription: Subscription, screen: bool) -> dict[str, Any]:
    """The ``attach`` result; with a screen, stdout goes on from the end of what it shows."""
    replays = dict(subscription.replays)
    if screen:
        held = replays["stdout"]
        replays["stdout"] = Replay(b"", held.offset + len(held.data), False)
    return {
        "proc": process.id,
        "offsets": dict(process.offsets),
        "replay_from": {stream: held.offset for stream, held in replays.items()},
        "truncated": any(held.truncated for held in replays.values()),
        "state": "running" if process.running else "exited",
        "exit": process.status,
        "screen": screen,
    }
