"""Reconnecting after a dropped connection: the policy, and what to ask the server again.

Pure (no socket, no clock of its own): both clients use it the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from procwire_client.core.params import attach_params
from procwire_client.errors import ClusterUnavailable

RESUME_RETRY_DELAY = 0.5  # seconds between re-attaches the cluster could not serve yet


@dataclass(frozen=True)
class Reconnect:
    """How a client reconnects after its connection dropped (``reconnect=Reconnect(...)``;
    ``reconnect=True`` is ``Reconnect()``).

    It tries at once, then after ``delay`` seconds, growing by ``factor`` up to
    ``max_delay``, until ``deadline`` seconds have passed since the drop; then
    it gives up and the connection is lost as without ``reconnect``.
    """

    delay: float = 0.1
    max_delay: float = 2.0
    factor: float = 2.0
    deadline: float = 30.0

    def delays(self) -> Iterator[float]:
        """The pause before each attempt: 0 first, then growing up to ``max_delay``."""
        yield 0.0
        delay = self.delay
        while True:
            yield delay
            delay = min(self.max_delay, delay * self.factor)

    @classmethod
    def from_option(cls, option: bool | Reconnect | None) -> Reconnect | None:
        if option is None or option is False:
            return None
        return cls() if option is True else option


def resume_params(proc: int, offsets: Mapping[str, int], output_format: Mapping[str, Any]) -> dict[str, Any]:
    """The ``attach`` that resumes ``proc`` from exactly the bytes received, in the same format."""
    binary, encoding, mode = (output_format.get(key) for key in ("binary", "encoding", "mode"))
    return attach_params(proc, dict(offsets), binary, encoding, False, mode)


def output_format(params: Mapping[str, Any]) -> dict[str, Any]:
    """How a ``start`` or ``attach`` asked to receive the output, and in which mode (to ask the same again)."""
    return {key: params[key] for key in ("binary", "encoding", "mode") if params.get(key) is not None}


def worth_retrying(error: BaseException | None, now: float, give_up_at: float) -> bool:
    """Whether a resuming ``attach`` that failed with ``error`` is asked again after
    :data:`RESUME_RETRY_DELAY`: -32009 says the cluster cannot reach the process's
    node *now* (Redis away, or a node that does not answer: one that died is
    declared lost within ``CLUSTER_NODE_TIMEOUT``, and the attach then answers
    its lost exit), until the policy's deadline."""
    return isinstance(error, ClusterUnavailable) and now + RESUME_RETRY_DELAY < give_up_at


def not_kept_message(proc: int) -> str:
    return (
        f"process {proc} is lost: it was not kept (on_disconnect='kill'), so the server stopped it "
        "when the connection dropped"
    )


def resume_failed_message(proc: int, reason: object) -> str:
    return f"process {proc} could not be resumed after the connection dropped: {reason}"


def history_gap(proc: int, requested: Mapping[str, int], answer: Any) -> str | None:
    """Why a resuming ``attach`` answer does not go on exactly from ``requested``, if it does not:
    the server's history dropped bytes the client never received."""
    replay_from = (answer or {}).get("replay_from") if isinstance(answer, Mapping) else None
    if not isinstance(replay_from, Mapping):
        return None
    if not any(replay_from.get(stream, 0) > offset for stream, offset in requested.items()):
        return None
    return (
        f"process {proc}: output was lost while the connection was down (the server's history no longer held "
        f"it: resumed from {dict(replay_from)} instead of {dict(requested)}); use a larger buffer"
    )
