"""A finished process's status as the protocol reports it (the ``exit`` notification)."""

from __future__ import annotations

import os
import signal
from typing import Any

from app.processes.reaper import Reaped


def exit_status(
    proc: int, pid: int, timed_out: bool, reaped: Reaped, duration: float, incomplete: bool
) -> dict[str, Any]:
    """The ``exit`` notification's params, from a ``wait4`` status and rusage."""
    status = reaped.status
    signaled = os.WIFSIGNALED(status)
    signum = os.WTERMSIG(status) if signaled else None
    return {
        "proc": proc,
        "pid": pid,
        "code": None if signaled else os.waitstatus_to_exitcode(status),
        "signal": signal_name(signum) if signum else None,
        "core_dumped": bool(signaled and os.WCOREDUMP(status)),
        "timed_out": timed_out,
        "duration": round(duration, 6),
        "output_incomplete": incomplete,
        "rusage": {
            "utime": reaped.rusage.ru_utime,
            "stime": reaped.rusage.ru_stime,
            "maxrss_kb": reaped.rusage.ru_maxrss,
        },
    }


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"
