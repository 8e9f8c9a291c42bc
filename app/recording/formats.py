"""The two formats a recording is served in, made from its journal (no I/O here).

A terminal is recorded as asciicast v2 (asciinema's format: a JSON header
line, then one ``[time, code, data]`` array per event: ``"o"`` output,
``"i"`` input, ``"r"`` a resize as ``"COLSxROWS"``), so asciinema and
asciinema-player play it.  Its data is text: output is decoded as UTF-8
incrementally, so a character cut between two reads is written whole with
the second; bytes that are not UTF-8 are written as U+FFFD, as asciinema does.

Pipes are recorded as procwire's timed JSON lines, one object per line:
a header (``format``, ``version``, ``timestamp``, ``command``, ``streams``),
then ``{"time", "stream", "offset", "data"}`` per chunk (``stream`` is
``stdout``, ``stderr`` or ``stdin``; ``offset`` is the stream's byte offset
as the protocol counts it), with ``"encoding": "base64"`` when the chunk is
binary (not UTF-8 on its own, or with a NUL byte), so every byte is kept;
``{"time", "stream", "eof": true}`` at a stream's end, and
``{"time", "exit": {...}}`` (the ``exit`` notification's params) last.
"""

from __future__ import annotations

import base64
import codecs
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import orjson

from app.recording.journal import Event

ASCIICAST = "asciicast"
PIPES = "pipes"
PIPES_FORMAT = "procwire-pipes"
EXTENSIONS = {ASCIICAST: ".cast", PIPES: ".jsonl"}
NUL = b"\x00"  # binary data: as base64 (JSON would spend six bytes on each)
MEDIA_TYPES = {ASCIICAST: "application/x-asciicast", PIPES: "application/x-ndjson"}


def line(value: Any) -> bytes:
    return orjson.dumps(value) + b"\n"


class Format(Protocol):
    """Turns what happens to a process into the lines of its recording."""

    name: str

    def header(self, timestamp: int, command: str, size: tuple[int, int] | None, streams: list[str]) -> bytes: ...

    def output(self, time: float, stream: str, data: bytes, offset: int) -> bytes: ...

    def input(self, time: float, data: bytes, offset: int) -> bytes: ...

    def resized(self, time: float, rows: int, cols: int) -> bytes: ...

    def end_of_stream(self, time: float, stream: str) -> bytes: ...

    def exited(self, time: float, status: dict[str, Any]) -> bytes: ...


class Asciicast:
    """asciicast v2: https://docs.asciinema.org/manual/asciicast/v2/"""

    name = ASCIICAST

    def __init__(self) -> None:
        self._decoders = {code: codecs.getincrementaldecoder("utf-8")("replace") for code in "oi"}

    def header(self, timestamp: int, command: str, size: tuple[int, int] | None, streams: list[str]) -> bytes:
        rows, cols = size or (24, 80)
        return line(
            {
                "version": 2,
                "width": cols,
                "height": rows,
                "timestamp": timestamp,
                "command": command,
                "title": command,
                "env": {"TERM": "xterm-256color"},
            }
        )

    def _event(self, time: float, code: str, data: bytes) -> bytes:
        text = self._decoders[code].decode(data)
        return line([round(time, 6), code, text]) if text else b""

    def output(self, time: float, stream: str, data: bytes, offset: int) -> bytes:
        return self._event(time, "o", data)

    def input(self, time: float, data: bytes, offset: int) -> bytes:
        return self._event(time, "i", data)

    def resized(self, time: float, rows: int, cols: int) -> bytes:
        return line([round(time, 6), "r", f"{cols}x{rows}"])

    def end_of_stream(self, time: float, stream: str) -> bytes:
        """What is left of a character cut short, as U+FFFD."""
        text = self._decoders["o"].decode(b"", final=True)
        return line([round(time, 6), "o", text]) if text else b""

    def exited(self, time: float, status: dict[str, Any]) -> bytes:
        return b""  # asciicast v2 has no exit event: the status is in the recording's metadata


class Pipes:
    """procwire's timed JSON lines (see the module's docstring)."""

    name = PIPES

    def header(self, timestamp: int, command: str, size: tuple[int, int] | None, streams: list[str]) -> bytes:
        return line(
            {"format": PIPES_FORMAT, "version": 1, "timestamp": timestamp, "command": command, "streams": streams}
        )

    def output(self, time: float, stream: str, data: bytes, offset: int) -> bytes:
        event: dict[str, Any] = {"time": round(time, 6), "stream": stream, "offset": offset}
        text = _text(data)
        if text is None:
            event.update(data=base64.b64encode(data).decode("ascii"), encoding="base64")
        else:
            event["data"] = text
        return line(event)

    def input(self, time: float, data: bytes, offset: int) -> bytes:
        return self.output(time, "stdin", data, offset)

    def resized(self, time: float, rows: int, cols: int) -> bytes:
        return b""  # pipes have no size

    def end_of_stream(self, time: float, stream: str) -> bytes:
        return line({"time": round(time, 6), "stream": stream, "eof": True})

    def exited(self, time: float, status: dict[str, Any]) -> bytes:
        return line({"time": round(time, 6), "exit": status})


def _text(data: bytes) -> str | None:
    """The chunk as text, unless it is binary (not UTF-8, or with a NUL byte)."""
    if NUL in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def format_for(pty: bool) -> Format:
    return Asciicast() if pty else Pipes()


def render(meta: dict[str, Any], journal: Iterable[tuple[Event, bytes]]) -> Iterator[bytes]:
    """The recording described by ``meta`` in its format, from its journal's events."""
    form = format_for(meta["format"] == ASCIICAST)
    size = meta["size"]
    yield form.header(
        int(meta["started_at"]),
        meta["command"],
        (size["rows"], size["cols"]) if size else None,
        meta["streams"],
    )
    for event, data in journal:
        if lines := _event_lines(form, event, data):
            yield lines


def _event_lines(form: Format, event: Event, data: bytes) -> bytes:
    time = event["t"]
    if "exit" in event:
        return form.exited(time, event["exit"])
    if "resize" in event:
        return form.resized(time, *event["resize"])
    stream = event["stream"]
    if event.get("eof"):
        return form.end_of_stream(time, stream)
    if stream == "stdin":
        return form.input(time, data, event["offset"])
    return form.output(time, stream, data, event["offset"])
