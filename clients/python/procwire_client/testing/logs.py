"""The servers' log files: which ones are alive in this process, and what each said lately.

Each :class:`~procwire_client.testing.ProcwireServer` logs to a file of its own, listed here while
the object lives; the pytest plugin notes every file's size as a test starts and, when the test
fails, puts what was written since into its report.
"""

from __future__ import annotations

import os
from pathlib import Path

TAIL_BYTES = 64 * 1024  # at most this much of a log goes into an error or a report

_alive: dict[Path, str] = {}  # the log file of every server object alive, and a title for it


def watch(path: Path, title: str) -> None:
    _alive[path] = title


def forget(path: Path) -> None:
    _alive.pop(path, None)


def alive() -> dict[Path, str]:
    """The log file of every server object still alive in this process, with its title."""
    return dict(_alive)


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def read(path: Path, offset: int = 0) -> str:
    """What was written to ``path`` from ``offset`` on, its last ``TAIL_BYTES`` at most."""
    try:
        with path.open("rb") as file:
            end = file.seek(0, os.SEEK_END)
            start = max(offset, end - TAIL_BYTES)
            file.seek(start)
            text = file.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return f"[{start - offset} bytes before]\n{text}" if start > offset else text
