"""py-spy sampling of the procwire worker while a workload runs, and a summary of it.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``).
With ``--native`` (the default) the innermost frames are C: system calls such
as ``send`` or ``read`` show up by name, and samples whose innermost frame is
``epoll_wait`` are the hub waiting, counted as idle.  The summary gives each
function's share of the busy samples as the innermost frame ("own"), the
innermost Python frame, and procwire's functions anywhere in the stack
("inclusive").  The worker's CPU time (user, system) over the same window
comes from /proc/<pid>/stat.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import Supervisor
from bench.servers import ROOT

FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
IDLE = ("epoll_wait", "epoll_pwait", "poll", "select")


def find_py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of ``pid`` so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _short_file(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return path.removeprefix("/")


def _frame(raw: str) -> tuple[str, bool]:
    """``function (file)`` and whether it is Python code."""
    match = FRAME.match(raw.strip())
    if match is None:
        return raw.strip(), False
    file = match["file"]
    python = file.endswith(".py") or file.startswith("<")
    if not python and "/" not in file and ".so" in file:
        file = file.split(".so")[0] + ".so"
    return f"{match['function']} ({_short_file(file)})", python


def summarize(path: Path, top: int = 12) -> dict[str, Any]:
    own: Counter[str] = Counter()
    own_python: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    busy = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(raw) for raw in stack.split(";") if raw and not raw.startswith(("process ", "thread "))]
        if not frames:
            continue
        if frames[-1][0].split(" ")[0] in IDLE:
            idle += count
            continue
        busy += count
        own[frames[-1][0]] += count
        python = [name for name, is_python in frames if is_python]
        own_python[python[-1] if python else "(no Python frame)"] += count
        for name in {name for name, _ in frames}:
            inclusive[name] += count

    def shares(counter: Counter[str], limit: int) -> list[tuple[str, float]]:
        return [(name, round(count / busy, 3)) for name, count in counter.most_common(limit)] if busy else []

    return {
        "samples": busy + idle,
        "idle_samples": idle,
        "own": shares(own, top),
        "own_python": shares(own_python, top),
        "inclusive": shares(inclusive, top * 4),
        "file": str(path),
    }


@dataclass
class Profiler:
    executable: str
    supervisor: Supervisor
    out_dir: Path
    rate: int = 200
    native: bool = True

    @contextlib.contextmanager
    def record(self, pid: int, name: str) -> Iterator[dict[str, Any]]:
        """Sample ``pid`` while the block runs; the yielded dict receives the summary."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        output = self.out_dir / f"{name}.txt"
        output.unlink(missing_ok=True)
        log_path = self.out_dir / f"{name}.log"
        argv = [self.executable, "record", "--pid", str(pid), "--output", str(output), "--format", "raw"]
        argv += ["--rate", str(self.rate), "--native" if self.native else "--nonblocking"]
        with open(log_path, "wb") as log:
            process = self.supervisor.start(argv, stdout=log, stderr=log)
        summary: dict[str, Any] = {"native": self.native}
        time.sleep(1.0)  # attach
        started = time.monotonic()
        user, system = cpu_seconds(pid)
        try:
            yield summary
        finally:
            seconds = time.monotonic() - started
            user_after, system_after = cpu_seconds(pid)
            self.supervisor.stop(process, first=signal.SIGINT, grace=30.0)
            summary.update(
                seconds=round(seconds, 2),
                cpu_user=round((user_after - user) / seconds, 3),
                cpu_system=round((system_after - system) / seconds, 3),
            )
            if output.exists():
                summary.update(summarize(output))
            else:
                summary["error"] = log_path.read_text(errors="replace")[-500:]
