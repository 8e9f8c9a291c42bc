"""The clients' resume rules (procwire_client.core.resume), alone."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from procwire_client.core.resume import (
    RESUME_RETRY_DELAY,
    Reconnect,
    history_gap,
    output_format,
    resume_params,
    worth_retrying,
)
from procwire_client.errors import ClusterUnavailable, NoSuchProcess, ProcwireConnectionError


def test_reconnect_option() -> None:
    assert Reconnect.from_option(False) is None and Reconnect.from_option(None) is None
    assert Reconnect.from_option(True) == Reconnect()
    policy = Reconnect(delay=1.0, max_delay=5.0, factor=3.0, deadline=9.0)
    assert Reconnect.from_option(policy) is policy


@given(st.floats(0.01, 5), st.floats(0.01, 10), st.floats(1, 4))
def test_delays_start_at_once_then_grow_up_to_the_maximum(delay: float, max_delay: float, factor: float) -> None:
    delays = list(itertools.islice(Reconnect(delay=delay, max_delay=max_delay, factor=factor).delays(), 30))
    assert delays[0] == 0.0 and delays[1] == delay
    assert all(later >= earlier or later == max_delay for earlier, later in itertools.pairwise(delays[1:]))
    assert all(value <= max(delay, max_delay) for value in delays)


def test_resume_asks_for_the_exact_offsets_in_the_same_format() -> None:
    started = {"argv": ["cat"], "binary": True, "on_disconnect": "keep"}
    assert resume_params(7, {"stdout": 10, "stderr": 3}, output_format(started)) == {
        "proc": 7,
        "offset": {"stdout": 10, "stderr": 3},
        "binary": True,
    }
    attached = {"proc": 7, "encoding": "base64", "binary": None}
    assert resume_params(7, {"stdout": 0, "stderr": 0}, output_format(attached)) == {
        "proc": 7,
        "offset": {"stdout": 0, "stderr": 0},
        "encoding": "base64",
    }


def test_a_history_gap_is_reported_never_skipped() -> None:
    asked = {"stdout": 10, "stderr": 3}
    assert history_gap(7, asked, {"replay_from": {"stdout": 10, "stderr": 3}}) is None
    assert history_gap(7, asked, {"replay_from": {"stdout": 8, "stderr": 3}}) is None  # overlap: the core cuts it
    gap = history_gap(7, asked, {"replay_from": {"stdout": 12, "stderr": 3}})
    assert gap is not None and "output was lost" in gap and "process 7" in gap


def test_only_an_unavailable_cluster_is_asked_again_and_only_before_the_deadline() -> None:
    unavailable = ClusterUnavailable("cluster unavailable: node n did not answer")
    assert worth_retrying(unavailable, now=0.0, give_up_at=RESUME_RETRY_DELAY * 2)
    assert not worth_retrying(unavailable, now=0.0, give_up_at=RESUME_RETRY_DELAY)
    for final in (None, NoSuchProcess("no such process"), ProcwireConnectionError("gone")):
        assert not worth_retrying(final, now=0.0, give_up_at=60.0)
