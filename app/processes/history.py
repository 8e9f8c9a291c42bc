"""What a kept process wrote, bounded: a byte ring per stream, no I/O.

Offsets are absolute byte positions in the stream, so a client that comes
back can ask for "everything from offset N" and learn whether the ring had
already dropped part of it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Replay:
    data: bytes
    offset: int  # of data's first byte
    truncated: bool  # bytes from the requested offset were already dropped


class History:
    """The last ``capacity`` bytes of one stream."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self.start = 0  # offset of the oldest byte still held
        self.end = 0  # offset just past the newest byte

    def append(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        self.end += len(data)
        while self._size > self.capacity:
            oldest = self._chunks[0]
            excess = self._size - self.capacity
            if len(oldest) <= excess:
                self._chunks.popleft()
                dropped = len(oldest)
            else:
                self._chunks[0] = oldest[excess:]
                dropped = excess
            self._size -= dropped
            self.start += dropped

    def read_from(self, offset: int) -> Replay:
        """Everything held from ``offset`` on (clamped to what is held)."""
        begin = min(max(offset, self.start), self.end)
        held = b"".join(self._chunks)
        return Replay(held[begin - self.start :], begin, offset < self.start)
