"""What every workload shares: the run context, and the shape of a workload."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bench import timeline
from bench.client import BASE64, BINARY, OUTPUT_MODES, Closed, Conn, OutputMode
from bench.procs import Supervisor, raise_if_interrupted
from bench.results import PROCWIRE, REDIS, REFERENCE, Metric
from bench.servers import Procwire, Redis, Server, Websocketd

BINARY_FAILS_WITH_REDIS = (
    "with REDIS_URL set, binary output frames failed at the start of the run (bench.client.binary_output_works: "
    "no output before the exit); there, base64 output notifications instead"
)


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
    redis_server: Redis | None = None  # started when a workload first needs it, for the whole run
    redis_binary: bool = True  # binary output frames work with REDIS_URL set (probed at the start)

    @property
    def with_redis(self) -> bool:
        """Run the Redis variant of every workload (``--no-redis`` leaves it out)."""
        return not self.opts.no_redis and Redis.available() is not None

    def redis(self) -> Redis:
        if self.redis_server is None or not self.redis_server.alive():
            if self.redis_server is not None:
                self.redis_server.stop()
            self.redis_server = Redis(self.supervisor, self.work_dir).start()
        return self.redis_server

    def redis_env(self, workers: int = 1) -> dict[str, str]:
        """procwire's settings for the cluster mode on the suite's Redis."""
        env = {"PROCWIRE_REDIS_URL": self.redis().url}
        if workers != 1:
            env["PROCWIRE_WORKERS"] = str(workers)
        return env

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
    """One row group of the table: the same job done by procwire and by the reference.

    Each round runs every *side* once, in an order that rotates from round
    to round: ``procwire``, ``reference`` and, when the suite has a Redis,
    ``redis`` (procwire with ``REDIS_URL`` set, otherwise the same).  A
    workload may define other sides (other configurations of procwire).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    reference_label: ClassVar[str]
    uses_websocketd: ClassVar[bool] = True
    fresh_servers: ClassVar[bool] = False  # a new server per round (memory readings)
    profiled: ClassVar[bool] = False  # profiled with py-spy after the timed rounds
    profiled_if_redis_misses: ClassVar[bool | None] = None  # the Redis side too, on a missed target (None: profiled)
    timeline_starts_at: ClassVar[str | None] = None  # timed phase by phase (bench/timeline.py), from this event
    redis_variant: ClassVar[bool] = True  # also run with REDIS_URL set (the `redis` side)
    redis_tolerance: ClassVar[float] = 0.10  # issue 10: each ratio within 10 % of the run without Redis

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.opts = ctx.opts
        self.notes: list[str] = []
        self.side = PROCWIRE  # the side running now

    @property
    def output_mode(self) -> OutputMode:
        """The suite's output mode, except binary frames on a side with Redis where they fail."""
        mode = self.ctx.output_mode
        if mode is BINARY and self.uses_redis(self.side) and not self.ctx.redis_binary:
            self.note(BINARY_FAILS_WITH_REDIS)
            return BASE64
        return mode

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @property
    def rounds(self) -> int:
        return self.opts.rounds

    @property
    def redis_rounds(self) -> int:
        """Rounds of the Redis variant: ``--redis-rounds`` (3 in a full run), at most the workload's."""
        return min(self.rounds, self.opts.redis_rounds or self.rounds)

    def one_redis_round(self) -> int:
        """For the long workloads: one round with Redis unless ``--redis-rounds`` was given."""
        return min(self.rounds, self.opts.redis_rounds if getattr(self.opts, "redis_rounds_given", False) else 1)

    def sides(self) -> list[str]:
        """What runs in each round, in the first round's order."""
        if self.redis_variant and self.ctx.with_redis:
            return [PROCWIRE, REDIS, REFERENCE]
        return [PROCWIRE, REFERENCE]

    def labels(self) -> dict[str, str]:
        return {PROCWIRE: "procwire", REDIS: "procwire, REDIS_URL set", REFERENCE: self.reference_label}

    def side_rounds(self, side: str) -> int:
        return self.redis_rounds if side == REDIS else self.rounds

    def needs_websocketd(self, side: str) -> bool:
        return side == REFERENCE and self.uses_websocketd

    def uses_redis(self, side: str) -> bool:
        return side == REDIS

    def start_server(self, side: str) -> Server | None:
        if side == PROCWIRE:
            return self.ctx.procwire(self.procwire_env())
        if side == REDIS:
            return self.ctx.procwire(self.side_env(side))
        return self.start_reference()

    def side_env(self, side: str) -> dict[str, str]:
        """procwire's settings on ``side`` (for the timeline's server too)."""
        if side == REDIS:
            return {**self.procwire_env(), **self.ctx.redis_env()}
        return self.procwire_env()

    def run_side(self, side: str, server: Server | None, deadline: float) -> dict[str, float]:
        self.side = side
        if side == REFERENCE:
            return self.run_reference(server, deadline)
        assert isinstance(server, Procwire)
        return self.run_procwire(server, deadline)

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

    def timeline_phases(self, events: list[tuple[str, int]]) -> tuple[list[timeline.Phase], int]:
        """The median of each step, and over how many operations."""
        assert self.timeline_starts_at is not None
        return timeline.phases(events, self.timeline_starts_at)

    def timeline_events(self, events_file: Path) -> dict[str, Any]:
        """The events the worker wrote (``events``: ``[name, ns]`` pairs) and the probes it lacked."""
        return dict(json.loads(events_file.read_text()))


def read_to_end(conn: Conn, deadline: float) -> int:
    """Bytes received until the server ends the connection (a Close is answered by the client)."""
    received = frames = 0
    try:
        while True:
            received += len(conn.recv()[1])
            frames += 1
            if not frames & 63:
                check(deadline)
    except Closed:
        return received
    finally:
        conn.drop()
