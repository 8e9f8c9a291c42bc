"""Bulk output waits its turn, so that interactive output never waits behind it.

A pump whose pipe is always full and whose socket always has room is ready
at every turn of the hub; with hundreds of them, a keystroke's echo waited
behind one large chunk of each (300 streams: about 200 ms).  So a pump that
has just moved a large chunk asks for a turn before it reads again, and
turns are given out one at a time by a libev *idle* watcher, which runs only
in a loop iteration where no other watcher is pending: an echo's stdin
write, the cat's output and its frame all go first, and bulk output fills
the time they leave, one chunk per iteration, first come first served
(fair among bulk streams).  Bytes are never reordered or dropped: each pump
still sends its own chunks in order, it only waits between them.

So that a steady flood of small chunks cannot stall bulk output for good,
a timer also gives out a turn whenever ``STARVATION_LIMIT`` passes without
one.

An echo that arrives while a bulk chunk is being read and sent waits for
that chunk, so while small chunks flow (someone is typing) bulk chunks are
kept to ``BULK_SLICE_WHILE_INTERACTIVE``; when nothing interactive has run
for ``INTERACTIVE_QUIET`` seconds they grow back to full size, and
throughput is what it was.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from gevent import get_hub
from gevent.hub import Waiter

STARVATION_LIMIT = 0.05
BULK_CHUNK = 16 * 1024  # more than a screenful at once: the stream is bulk
BULK_SLICE_WHILE_INTERACTIVE = 128 * 1024
INTERACTIVE_QUIET = 0.5


class BulkTurns:
    """The queue of bulk pumps of one hub, and the watchers that let them go."""

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self._waiting: deque[Waiter] = deque()
        self._idle = loop.idle()
        self._timer = loop.timer(STARVATION_LIMIT, STARVATION_LIMIT)
        self._given_since_tick = False
        self._interactive_until = 0.0

    def note_interactive(self) -> None:
        """Small output just went out: keep bulk slices short for a while."""
        self._interactive_until = self.loop.now() + INTERACTIVE_QUIET

    def slice_limit(self, largest: int) -> int:
        """How much a bulk turn may read now."""
        if self.loop.now() < self._interactive_until:
            return min(largest, BULK_SLICE_WHILE_INTERACTIVE)
        return largest

    def wait(self) -> None:
        """Block this greenlet until the hub has nothing more urgent to do."""
        waiter = Waiter()
        self._waiting.append(waiter)
        if len(self._waiting) == 1:
            self._idle.start(self._give)
            self._timer.start(self._give_if_starved)
        try:
            waiter.get()
        except BaseException:  # killed while waiting (a cut pump, a stopping worker)
            if waiter in self._waiting:
                self._waiting.remove(waiter)
                self._stop_if_empty()
            raise

    def _give(self) -> None:
        waiter = self._waiting.popleft()
        self._stop_if_empty()
        self._given_since_tick = True
        waiter.switch(None)

    def _give_if_starved(self) -> None:
        if not self._given_since_tick and self._waiting:
            self._give()
        self._given_since_tick = False

    def _stop_if_empty(self) -> None:
        if not self._waiting:
            self._idle.stop()
            self._timer.stop()


_turns: BulkTurns | None = None


def bulk_turns() -> BulkTurns:
    """This hub's turns (see the module's docstring)."""
    global _turns
    loop = get_hub().loop
    if _turns is None or _turns.loop is not loop:
        _turns = BulkTurns(loop)
    return _turns
