"""Message rate limits per connection: token buckets, with no I/O.

A connection may send ``rate`` messages per second on average and ``burst``
at once.  Messages beyond that are refused (-32004).  Each refusal also
takes a token from a second bucket, the connection's patience, which holds
``OVERLOAD_SECONDS * rate / 2`` and refills at ``rate / 2``: a client that
keeps sending at twice the rate empties it in ``OVERLOAD_SECONDS`` (sooner
when it sends faster) and is then closed with 1008.  One that stays under
1.5 times the rate is refused now and then but never closed.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable

OVERLOAD_SECONDS = 5.0


class TokenBucket:
    """Holds up to ``burst`` tokens, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._stamp = now

    def take(self, now: float, amount: float = 1.0) -> bool:
        """Take ``amount`` tokens if there are enough; a clock going back adds none."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self._stamp) * self.rate)
        self._stamp = max(self._stamp, now)
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False


class Verdict(enum.Enum):
    ACCEPT = "accept"
    REFUSE = "refuse"  # answer -32004
    CLOSE = "close"  # close the connection with 1008


class MessageLimiter:
    """The verdict on each message of one connection."""

    def __init__(self, rate: float, burst: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst or max(1, math.ceil(rate))  # default: one second's worth
        self._clock = clock
        now = clock()
        self._messages = TokenBucket(rate, self.burst, now)
        self._patience = TokenBucket(rate / 2, max(1.0, OVERLOAD_SECONDS * rate / 2), now)
        self.refusing = False  # True from the first refusal until a message is accepted again

    def check(self) -> Verdict:
        now = self._clock()
        if self._messages.take(now):
            self.refusing = False
            return Verdict.ACCEPT
        self.refusing = True
        return Verdict.REFUSE if self._patience.take(now) else Verdict.CLOSE
