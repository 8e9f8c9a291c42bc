"""How a recording is kept on disk: a journal of events, the bytes as they came.

Writing asciicast or JSON lines while a process streams would spend the
worker's CPU on decoding and JSON-escaping every chunk (more than the
stream itself costs).  The recorder writes instead, per event, one short
JSON line and, for output and input, the chunk's raw bytes right after it,
in one ``writev``.  The formats users fetch (:mod:`.formats`) are made from
the journal when it is read.

Events (every one has ``t``, seconds since the recording began):

- ``{"t", "stream", "offset", "n"}`` then ``n`` bytes: a chunk of ``stdout``,
  ``stderr`` or ``stdin`` (``offset``: the stream's byte offset, as the
  protocol counts it);
- ``{"t", "stream", "eof": true}``: the stream ended;
- ``{"t", "resize": [rows, cols]}``: the terminal was resized;
- ``{"t", "exit": {...}}``: the ``exit`` notification's params, last.

A journal cut short (its worker killed in the middle of a write, or a disk
that filled) is read up to its last whole event.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Any

import orjson

Event = dict[str, Any]
LENGTH = "n"
READ_BYTES = 512 * 1024


def entry(event: Event, data: bytes = b"") -> list[bytes]:
    """The buffers of one event, for ``os.writev``: its line, then its data, if any."""
    if not data:
        return [orjson.dumps(event) + b"\n"]
    return [orjson.dumps({**event, LENGTH: len(data)}) + b"\n", data]


def events(chunks: Iterable[bytes]) -> Iterator[tuple[Event, bytes]]:
    """Each whole event of a journal read as ``chunks``, with its data (``b""`` if none)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        taken = 0
        while True:
            end = buffer.find(b"\n", taken)
            if end < 0:
                break
            event: Event = orjson.loads(buffer[taken:end])
            length = event.pop(LENGTH, 0)
            if end + 1 + length > len(buffer):
                break  # its data is in the next chunk
            yield event, bytes(buffer[end + 1 : end + 1 + length])
            taken = end + 1 + length
        del buffer[:taken]


def file_chunks(path: str) -> Iterator[bytes]:
    """A file's bytes, ``READ_BYTES`` at a time (a long recording is never read whole); opened
    now, so that a file deleted by retention meanwhile is still read whole."""
    return _chunks(open(path, "rb"))  # closed by _chunks


def _chunks(file: IO[bytes]) -> Iterator[bytes]:
    with file:
        while chunk := file.read(READ_BYTES):
            yield chunk
