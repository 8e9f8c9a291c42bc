"""Turn a stream's raw bytes into ``output`` notification params.

Pure functions and a small state machine, no I/O: the pump feeds bytes in
and sends whatever params come out.  In ``"text"`` mode a chunk goes out as
text when it is valid UTF-8; a multi-byte character cut by a read is held
back until its remaining bytes arrive, so no message splits a character.
Anything else goes out base64.  Every byte is sent exactly once, and
``offset`` always counts raw bytes of the stream.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from app.processes.sinks import Source

Encoding = Literal["text", "base64"]
Params = dict[str, Any]


def incomplete_tail_length(data: bytes) -> int:
    """How many trailing bytes of ``data`` start a UTF-8 character not yet complete."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # not a continuation byte: a lead or ASCII
            needed = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4 if byte >> 3 == 0b11110 else 1
            return back if needed > back else 0
    return 0


class OutputEncoder:
    """Encodes one stream (stdout or stderr) of one process."""

    def __init__(self, proc: int, stream: str, encoding: Encoding, offset: int = 0) -> None:
        self.proc = proc
        self.stream = stream
        self.encoding = encoding
        self.offset = offset
        self._held = b""

    @property
    def next_offset(self) -> int:
        """The stream offset the next byte fed must have."""
        return self.offset + len(self._held)

    def feed(self, data: bytes) -> list[Params]:
        """Encode newly read bytes; may hold back an unfinished character."""
        if self.encoding == "base64":
            return self._emit(data)
        data = self._held + data
        cut = len(data) - incomplete_tail_length(data)
        self._held = data[cut:]
        return self._emit(data[:cut])

    def finish(self) -> list[Params]:
        """Flush what was held back at end of stream (sent base64: it is not UTF-8)."""
        held, self._held = self._held, b""
        return self._emit(held)

    def _emit(self, chunk: bytes) -> list[Params]:
        if not chunk:
            return []
        params: Params = {"proc": self.proc, "stream": self.stream, "offset": self.offset}
        self.offset += len(chunk)
        if self.encoding == "text":
            try:
                params["data"] = chunk.decode("utf-8")
                return [params]
            except UnicodeDecodeError:
                pass
        params["data"] = base64.b64encode(chunk).decode("ascii")
        params["encoding"] = "base64"
        return [params]


@dataclass(frozen=True)
class OutputFormat:
    """How one connection receives one process's output."""

    binary: bool = False
    encoding: Encoding = "text"

    @classmethod
    def chosen(cls, process: Source, binary: bool | None = None, encoding: Encoding | None = None) -> OutputFormat:
        """What the attach asked for; what it left out is what the process's starter chose."""
        options = process.options
        return cls(options.binary if binary is None else binary, encoding or options.encoding)
