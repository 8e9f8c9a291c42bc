"""Text mode's framing: a program's stdout cut into lines, one message per line.

As websocketd: a line ends at ``\\n``, and ``\\n`` or ``\\r\\n`` is not part of
the message.  Unlike websocketd, nothing is dropped or altered:

- the last line is sent at end of file even without its ``\\n``;
- a line longer than the message limit goes as several messages of at most
  ``limit`` bytes each (cut between characters, never inside one);
- a line that is not valid UTF-8 goes as a binary message holding exactly
  its bytes, since a text message must be UTF-8 (websocketd sends such bytes
  in a text frame, which conforming clients reject).

Pure and incremental (sans-I/O): :meth:`Lines.feed` takes bytes as the pipe
gives them and returns the messages complete so far.
"""

from __future__ import annotations

from typing import TypeAlias

CUT_BACK = 3  # a UTF-8 character is at most 4 bytes: at most 3 of them precede a cut


Message: TypeAlias = str | bytes
"""One WebSocket message: text (``str``) or binary (``bytes``)."""


class Lines:
    """Bytes in, one message per line out."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        """The messages of every line ``data`` completes (and of overlong pending bytes)."""
        messages: list[Message] = []
        if b"\n" in data:
            *lines, rest = data.split(b"\n")
            if self._pending:
                lines[0] = bytes(self._pending) + lines[0]
            for line in lines:
                messages += self._line(line)
            self._pending = bytearray(rest)
        else:
            self._pending += data
        while len(self._pending) > self._limit:
            piece = _cut(bytes(self._pending), self._limit)
            messages.append(_message(piece))
            del self._pending[: len(piece)]
        return messages

    def finish(self) -> list[Message]:
        """At end of file: the unterminated last line, if any."""
        if not self._pending:
            return []
        last, self._pending = bytes(self._pending), bytearray()
        return self._line(last, terminated=False)

    def _line(self, line: bytes, terminated: bool = True) -> list[Message]:
        if terminated and line.endswith(b"\r"):
            line = line[:-1]
        messages = []
        while len(line) > self._limit:
            piece = _cut(line, self._limit)
            messages.append(_message(piece))
            line = line[len(piece) :]
        messages.append(_message(line))
        return messages


def _cut(data: bytes, limit: int) -> bytes:
    """Of ``data``, longer than ``limit``: at most ``limit`` bytes, cut between UTF-8 characters when it can."""
    for size in range(limit, max(limit - CUT_BACK, 1) - 1, -1):
        if _starts_character(data[size]):
            return data[:size]
    return data[:limit]


def _starts_character(byte: int) -> bool:
    return byte & 0xC0 != 0x80


def _message(line: bytes) -> Message:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line
