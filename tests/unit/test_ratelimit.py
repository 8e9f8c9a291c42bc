"""app.ratelimit: token buckets and the per-connection verdicts, on a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.security.ratelimit import OVERLOAD_SECONDS, MessageLimiter, TokenBucket, Verdict


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_starts_full_and_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0)
    assert [bucket.take(0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(0.1) and not bucket.take(0.1)
    assert [bucket.take(100) for _ in range(6)] == [True] * 5 + [False]  # never more than the burst


def test_clock_going_back_adds_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=1, now=10)
    assert bucket.take(10)
    assert not bucket.take(5)
    assert not bucket.take(10.5)
    assert bucket.take(11)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (1, 0), (-1, 1)])
def test_bucket_needs_positive_rate_and_burst(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, 0)


def test_burst_defaults_to_one_seconds_worth() -> None:
    assert MessageLimiter(20).burst == 20
    assert MessageLimiter(0.5).burst == 1
    assert MessageLimiter(20, 3).burst == 3


def test_messages_over_the_rate_are_refused_then_the_connection_is_closed() -> None:
    clock = Clock()
    limiter = MessageLimiter(10, 10, clock)
    verdicts = [limiter.check() for _ in range(10 + 25 + 1)]
    assert verdicts[:10] == [Verdict.ACCEPT] * 10
    assert verdicts[10:35] == [Verdict.REFUSE] * 25  # patience: OVERLOAD_SECONDS * rate / 2
    assert verdicts[35] is Verdict.CLOSE
    assert limiter.refusing


def test_twice_the_rate_is_closed_after_the_overload_time() -> None:
    clock = Clock()
    rate = 100
    limiter = MessageLimiter(rate, rate, clock)
    step = 1 / (2 * rate)
    for index in range(int(2 * rate * (OVERLOAD_SECONDS + 2))):
        clock.now += step
        if limiter.check() is Verdict.CLOSE:
            elapsed = index * step
            break
    else:
        raise AssertionError("never closed")
    assert OVERLOAD_SECONDS - 1 < elapsed < OVERLOAD_SECONDS + 1.5


def test_a_client_under_one_and_a_half_times_the_rate_is_never_closed() -> None:
    clock = Clock()
    rate = 50
    limiter = MessageLimiter(rate, rate, clock)
    verdicts = []
    for _ in range(int(1.4 * rate * 60)):  # a minute
        clock.now += 1 / (1.4 * rate)
        verdicts.append(limiter.check())
    assert Verdict.CLOSE not in verdicts and Verdict.REFUSE in verdicts


def test_accepting_again_ends_the_refusing_streak() -> None:
    clock = Clock()
    limiter = MessageLimiter(1, 1, clock)
    assert limiter.check() is Verdict.ACCEPT and not limiter.refusing
    assert limiter.check() is Verdict.REFUSE and limiter.refusing
    clock.now += 1
    assert limiter.check() is Verdict.ACCEPT and not limiter.refusing


@given(st.floats(0.5, 10_000), st.lists(st.floats(0, 0.05), max_size=300))
def test_never_more_than_burst_plus_rate_times_elapsed(rate: float, gaps: list[float]) -> None:
    clock = Clock()
    limiter = MessageLimiter(rate, 0, clock)
    start = clock.now
    accepted = 0
    for gap in gaps:
        clock.now += gap
        if limiter.check() is Verdict.ACCEPT:
            accepted += 1
    assert accepted <= limiter.burst + rate * (clock.now - start) + 1e-6
