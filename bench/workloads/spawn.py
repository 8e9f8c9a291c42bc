"""spawn: sequential ``start`` of /bin/true over one open connection, until its exit arrives.

The reference is what the operating system allows a Python program: a plain
loop of ``os.posix_spawn`` + ``waitpid`` of /bin/true, run by the suite.
A second, informational row keeps ``IN_FLIGHT`` starts in flight on the
connection (all sent, then all answers and exits read) against the same
loop spawning ``IN_FLIGHT`` children before it waits for them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import closing

from bench.client import ProcwireClient
from bench.results import Metric, at_least_ratio
from bench.servers import Procwire, Websocketd
from bench.workloads.base import Workload, before

TRUE = "/bin/true"
WARM_UP = 20
IN_FLIGHT = 4


class Spawn(Workload):
    name = "spawn"
    description = (
        "sequential `start` of /bin/true over one open connection until its `exit` arrives; informational: "
        f"{IN_FLIGHT} starts in flight (sent together, then their exits read), against the loop spawning "
        f"{IN_FLIGHT} children before it waits for them"
    )
    reference_label = "posix_spawn+waitpid loop"
    uses_websocketd = False
    profiled = True
    timeline_starts_at = "frame in"
    redis_tolerance = 0.20  # issue 10: spawn within 20 % with REDIS_URL set

    def metrics(self) -> list[Metric]:
        return [
            Metric("rate", "start-to-exit rate", "processes/s", "higher", at_least_ratio(0.8)),
            Metric("rate_in_flight", f"rate with {IN_FLIGHT} starts in flight", "processes/s", "higher"),
        ]

    def start_reference(self) -> Websocketd | None:
        return None

    def run_procwire(self, server: Procwire, deadline: float) -> dict[str, float]:
        with closing(ProcwireClient(server.url, server.headers, self.ctx.timeout)) as client:
            return {
                "rate": self._rate(lambda: self._starts(client, 1), 1, deadline),
                "rate_in_flight": self._rate(lambda: self._starts(client, IN_FLIGHT), IN_FLIGHT, deadline),
            }

    def run_reference(self, server: Websocketd | None, deadline: float) -> dict[str, float]:
        env = dict(os.environ)
        return {
            "rate": self._rate(lambda: _spawn_and_wait(1, env), 1, deadline),
            "rate_in_flight": self._rate(lambda: _spawn_and_wait(IN_FLIGHT, env), IN_FLIGHT, deadline),
        }

    def run_timeline(self, server: Procwire, deadline: float) -> None:
        """Sequential starts only: the timeline is of one start at a time."""
        with closing(ProcwireClient(server.url, server.headers, self.ctx.timeout)) as client:
            self._rate(lambda: self._starts(client, 1), 1, deadline)

    @staticmethod
    def _starts(client: ProcwireClient, count: int) -> None:
        requests = [client.request("start", {"argv": [TRUE]}) for _ in range(count)]
        client.wait_exits([client.answer(request)["proc"] for request in requests])

    def _rate(self, batch: Callable[[], None], per_batch: int, deadline: float) -> float:
        for _ in range(WARM_UP):
            batch()
        done, started = 0, time.perf_counter()
        while done < self.opts.spawn_count and before(deadline):
            batch()
            done += per_batch
        if done < self.opts.spawn_count:
            self.note(f"a round stopped at the time cap after {done} of {self.opts.spawn_count} starts")
        return done / (time.perf_counter() - started)


def _spawn_and_wait(count: int, env: dict[str, str]) -> None:
    for pid in [os.posix_spawn(TRUE, [TRUE], env) for _ in range(count)]:
        os.waitpid(pid, 0)
