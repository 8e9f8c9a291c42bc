"""spawn: sequential ``start`` of /bin/true over one open connection, until its exit arrives.

The reference is what the operating system allows a Python program: a plain
loop of ``os.posix_spawn`` + ``waitpid`` of /bin/true, run by the suite.
"""

from __future__ import annotations

import os
import time

from bench.client import ProcwireClient
from bench.results import Metric, at_least_ratio
from bench.servers import Procwire, Websocketd
from bench.workloads.base import Workload, before

TRUE = "/bin/true"
WARM_UP = 20


class Spawn(Workload):
    name = "spawn"
    description = "sequential `start` of /bin/true over one open connection until its `exit` arrives"
    reference_label = "posix_spawn+waitpid loop"
    uses_websocketd = False
    profiled = True
    timeline_starts_at = "frame in"

    def metrics(self) -> list[Metric]:
        return [Metric("rate", "start-to-exit rate", "processes/s", "higher", at_least_ratio(0.8))]

    def start_reference(self) -> Websocketd | None:
        return None

    def run_procwire(self, server: Procwire, deadline: float) -> dict[str, float]:
        client = ProcwireClient(server.url, server.headers, self.ctx.timeout)
        try:
            for _ in range(WARM_UP):
                client.wait_exit(client.start([TRUE]))
            done, started = 0, time.perf_counter()
            while done < self.opts.spawn_count and before(deadline):
                client.wait_exit(client.start([TRUE]))
                done += 1
            return self._rate(done, time.perf_counter() - started)
        finally:
            client.close()

    def run_reference(self, server: Websocketd | None, deadline: float) -> dict[str, float]:
        env = dict(os.environ)
        argv = [TRUE]
        for _ in range(WARM_UP):
            os.waitpid(os.posix_spawn(TRUE, argv, env), 0)
        done, started = 0, time.perf_counter()
        while done < self.opts.spawn_count and before(deadline):
            os.waitpid(os.posix_spawn(TRUE, argv, env), 0)
            done += 1
        return self._rate(done, time.perf_counter() - started)

    def _rate(self, done: int, elapsed: float) -> dict[str, float]:
        if done < self.opts.spawn_count:
            self.note(f"a round stopped at the time cap after {done} of {self.opts.spawn_count} starts")
        return {"rate": done / elapsed}
