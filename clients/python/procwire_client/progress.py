"""A transfer's progress on stderr, as scp shows it: bytes so far, rate, time; only on a terminal."""

from __future__ import annotations

import os
import sys
import time

REFRESH = 0.2  # seconds between two redraws
UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human(size: float) -> str:
    for unit in UNITS:
        if size < 1024 or unit == UNITS[-1]:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Counts bytes and redraws one line at most every 0.2 s; ``finish`` ends the line.

    Silent when stderr is not a terminal (a script's log gets nothing)."""

    def __init__(self, label: str, enabled: bool | None = None) -> None:
        self.label = label
        self.enabled = os.isatty(2) if enabled is None else enabled
        self.done = 0
        self.started = time.monotonic()
        self._drawn = 0.0

    def add(self, size: int) -> None:
        self.done += size
        now = time.monotonic()
        if self.enabled and now - self._drawn >= REFRESH:
            self._drawn = now
            self._draw(now)

    def finish(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            sys.stderr.write("\n")
            sys.stderr.flush()

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-6)
        minutes, seconds = divmod(int(elapsed), 60)
        line = f"{self.label}  {human(self.done)}  {human(self.done / elapsed)}/s  {minutes:02d}:{seconds:02d}"
        sys.stderr.write(f"\r{line}\x1b[K")
        sys.stderr.flush()
