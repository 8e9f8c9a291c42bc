"""How a program's connection ends, both ways.

The program exits first: the close code tells how (websocketd sends no close
frame at all, so a client cannot tell an exit from a crash): 1000 after exit
status 0, 4000 + N after exit status N, 4300 + S after signal S, 1011 with
the reason when the program could not start.

The client goes first: the program's stdin is closed, then the program's
stop sequence runs (websocketd's ``--closems`` escalation by default: INT at
0.1 s, TERM at 0.35 s, KILL at 0.85 s), each signal to the whole process
group so that grandchildren go too, each step only while some of the group
is left.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Sequence
from typing import Any, Protocol

import gevent

from app.errors import RpcError
from config.programs import StopStep

CLOSE_NORMAL = 1000
CLOSE_INTERNAL_ERROR = 1011
CLOSE_EXIT_BASE = 4000
CLOSE_SIGNAL_BASE = 4300
MAX_REASON_BYTES = 123  # a close frame's payload is at most 125 bytes, 2 of them the code
GROUP_POLL_INTERVAL = 0.01


def close_for_exit(status: dict[str, Any]) -> tuple[int, str]:
    """The close code and reason for an exit status (the ``exit`` notification's params)."""
    code, name = status.get("code"), status.get("signal")
    if name:
        number = getattr(signal.Signals, name, None)
        signum = int(number) if number is not None else int(str(name).removeprefix("SIG"))
        return CLOSE_SIGNAL_BASE + signum, f"killed by {name}"
    if code == 0:
        return CLOSE_NORMAL, "exit status 0"
    return CLOSE_EXIT_BASE + int(code or 0), f"exit status {code}"


def close_for_spawn_failure(error: RpcError) -> tuple[int, str]:
    return CLOSE_INTERNAL_ERROR, reason_text(f"cannot start: {error.message}")


def reason_text(text: str) -> str:
    """``text`` cut to fit a close frame, between characters."""
    encoded = text.encode("utf-8")
    if len(encoded) <= MAX_REASON_BYTES:
        return text
    return encoded[: MAX_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."


class Stoppable(Protocol):
    """What the stop sequence needs of a process (a :class:`~app.processes.process.Process`)."""

    def close_stdin(self) -> Any: ...

    def signal_group(self, signum: int) -> None: ...

    def group_alive(self) -> bool: ...


def run_stop_sequence(process: Stoppable, steps: Sequence[StopStep]) -> list[tuple[str, float]]:
    """Close stdin, then send each step's signal to the group at its time, while any of it is left.

    Returns the signals sent and when (seconds from the start), for the log.
    """
    started = time.monotonic()
    with contextlib.suppress(RpcError):
        process.close_stdin()
    sent: list[tuple[str, float]] = []
    for step in steps:
        if _group_gone_by(process, started + step.after):
            break
        process.signal_group(signal.Signals[f"SIG{step.signal}"])
        sent.append((step.signal, round(time.monotonic() - started, 3)))
    return sent


def _group_gone_by(process: Stoppable, deadline: float) -> bool:
    """Wait until ``deadline`` unless the whole group is gone before; whether it is gone."""
    while process.group_alive():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        gevent.sleep(min(left, GROUP_POLL_INTERVAL))
    return True
