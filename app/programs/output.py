"""A program's output as WebSocket messages: the sink its process publishes to.

``binary`` mode: each chunk read from stdout is one binary message, as it
comes.  ``text`` mode: one message per line (:mod:`app.programs.lines`).
stderr, by the program's ``stderr`` setting: ``log`` (each line to the
server log, as websocketd does), ``merge`` (into stdout: the process was
started with ``2>&1``), or ``tagged`` (websocketd's ``--passstderr``: each
line of either stream as ``{"stream": ..., "data": ...}``).

The pump that calls :meth:`ProgramOutput.output` waits while a message is
sent, so a slow client slows the program through its pipe and nothing
piles up here.  Once the client is gone, output is read and dropped so the
program is never stuck on a full pipe while its stop sequence runs.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

import orjson
from simple_websocket import ConnectionClosed

from app import metrics
from app.processes.sinks import Source
from app.programs.lines import Lines, Message

log = logging.getLogger("procwire.programs")

Send = Callable[[Message], None]


class ProgramOutput:
    """The :class:`~app.processes.process.OutputSink` of one program connection."""

    def __init__(self, name: str, mode: str, stderr: str, limit: int, send: Send) -> None:
        self._name = name
        self._binary = mode == "binary"
        self._stderr = stderr
        self._send = send
        self._lines = {"stdout": Lines(limit), "stderr": Lines(limit)}
        self._bytes = metrics.tally(metrics.PROGRAM_OUTPUT_BYTES, name)
        self.exit: Source | None = None  # the process, once it exited
        self.client_gone = False

    def output(self, process: Source, stream: str, data: bytes, offset: int) -> None:
        self._bytes.add(len(data))
        if stream == "stdout" and self._binary:
            self._deliver([data], stream)
        else:
            self._deliver(self._lines[stream].feed(data), stream)

    def end_of_stream(self, process: Source, stream: str) -> None:
        """The unterminated last line goes too (websocketd drops it)."""
        self._deliver(self._lines[stream].finish(), stream)

    def exited(self, process: Source) -> None:
        self.exit = process

    def _deliver(self, messages: list[Message], stream: str) -> None:
        if stream == "stderr" and self._stderr == "log":
            for message in messages:
                log.info("program %s stderr: %s", self._name, _printable(message), extra={"program": self._name})
            return
        if self._stderr == "tagged":
            messages = [_tagged(stream, message) for message in messages]
        for message in messages:
            if self.client_gone:
                return
            try:
                self._send(message)
            except ConnectionClosed:
                self.client_gone = True


def _tagged(stream: str, message: Message) -> Message:
    """websocketd's ``--passstderr`` framing; a line that is not UTF-8 goes in base64, as procwire's
    ``output`` notifications carry such bytes."""
    if isinstance(message, str):
        return orjson.dumps({"stream": stream, "data": message}).decode("utf-8")
    encoded = base64.b64encode(message).decode("ascii")
    return orjson.dumps({"stream": stream, "data": encoded, "encoding": "base64"}).decode("utf-8")


def _printable(message: Message) -> str:
    return message if isinstance(message, str) else repr(message)
