"""Processes of this machine, as ``/proc`` shows them: a server's workers, whether a pid still lives.

Linux only, as the server is.  Every wait here is bounded by its caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

POLL_INTERVAL = 0.05  # seconds between two looks


def children_of(pid: int) -> list[int]:
    """The children of ``pid`` (of every thread of it); none once it is gone."""
    children: list[int] = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children += [int(child) for child in path.read_text().split()]
        except OSError:
            continue
    return children


def pid_exists(pid: int) -> bool:
    """True while ``pid`` is a live process (zombies count as alive here: they are leaks too)."""
    return Path(f"/proc/{pid}").exists()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; the last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(POLL_INTERVAL)
    return condition()
