"""What every workload shares: the run context, and the shape of a workload."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from bench.client import BASE64, BINARY, OUTPUT_MODES, OutputMode
from bench.procs import Supervisor, raise_if_interrupted
from bench.results import Metric
from bench.servers import Procwire, Server, Websocketd


class Capped(Exception):
    """The workload's time cap ran out before this measurement was complete."""


def before(deadline: float) -> bool:
    """True while ``deadline`` has not passed; re-raises a swallowed interrupt."""
    raise_if_interrupted()
    return time.monotonic() < deadline


def check(deadline: float) -> None:
    raise_if_interrupted()
    if time.monotonic() > deadline:
        raise Capped("time cap reached")


@dataclass
class Context:
    opts: argparse.Namespace
    supervisor: Supervisor
    work_dir: Path
    websocketd: str | None
    binary: bool  # the server accepts `"binary": true` in `start`
    open_files: int
    procwire_root: Path
    cache: dict[str, object] = field(default_factory=dict)

    @property
    def output_mode(self) -> OutputMode:
        """How streamed bytes are asked for: ``--stream-mode``, or binary frames when the server has them."""
        if self.opts.stream_mode != "auto":
            return OUTPUT_MODES[self.opts.stream_mode]
        return BINARY if self.binary else BASE64

    @property
    def timeout(self) -> float:
        return self.opts.timeout

    def log(self, message: str) -> None:
        print(message, flush=True)

    def procwire(self, env: dict[str, str] | None = None, config: str = "gunicorn.conf.py") -> Procwire:
        return Procwire(
            self.supervisor, self.work_dir, env=dict(env or {}), root=self.procwire_root, config=config
        ).start()

    def websocketd_server(self, command: list[str], binary: bool = False) -> Websocketd:
        return Websocketd(self.supervisor, self.work_dir, command, binary=binary).start()


class Workload:
    """One row group of the table: the same job done by procwire and by the reference."""

    name: ClassVar[str]
    description: ClassVar[str]
    reference_label: ClassVar[str]
    uses_websocketd: ClassVar[bool] = True
    fresh_servers: ClassVar[bool] = False  # a new server per round (memory readings)
    profiled: ClassVar[bool] = False  # profiled with py-spy after the timed rounds
    timeline_starts_at: ClassVar[str | None] = None  # timed phase by phase (bench/timeline.py), from this event

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.opts = ctx.opts
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @property
    def rounds(self) -> int:
        return self.opts.rounds

    def metrics(self) -> list[Metric]:
        raise NotImplementedError

    def procwire_env(self) -> dict[str, str]:
        return {}

    def start_reference(self) -> Server | None:
        """The reference server, or None when the reference runs in the suite itself."""
        raise NotImplementedError

    def run_procwire(self, server: Procwire, deadline: float) -> dict[str, float]:
        raise NotImplementedError

    def run_reference(self, server: Server | None, deadline: float) -> dict[str, float]:
        raise NotImplementedError

    def run_profiled(self, server: Procwire, deadline: float) -> None:
        """What py-spy watches: by default one more procwire round."""
        self.run_procwire(server, deadline)

    def run_timeline(self, server: Procwire, deadline: float) -> None:
        """What bench/timeline.py times: by default one more procwire round."""
        self.run_procwire(server, deadline)
