"""cycle: connect, start /bin/true, receive its exit, close; sequentially.

procwire: the client sends ``start`` right after the handshake, reads until
the ``exit`` notification, then does the closing handshake.  websocketd runs
/bin/true for each connection and closes it when the program ends; the
client reads until then and closes its socket.
"""

from __future__ import annotations

import time

from bench.client import Closed, Conn, ProcwireClient
from bench.results import Metric, at_least_ratio
from bench.servers import Procwire, Websocketd
from bench.workloads.base import Workload, before

WARM_UP = 10


class Cycle(Workload):
    name = "cycle"
    description = (
        "connect, start /bin/true, receive its exit, close; sequential (procwire: `start` sent right after the "
        "handshake, then the client's closing handshake; websocketd runs /bin/true per connection and closes)"
    )
    reference_label = "websocketd /bin/true"
    timeline_starts_at = "accepted"
    profiled_if_redis_misses = True  # the timeline does not see the Redis writer's work between cycles

    def metrics(self) -> list[Metric]:
        return [Metric("rate", "cycle rate", "cycles/s", "higher", at_least_ratio(1.0))]

    def start_reference(self) -> Websocketd | None:
        return self.ctx.websocketd_server(["/bin/true"])

    def _procwire_cycle(self, server: Procwire) -> None:
        client = ProcwireClient(server.url, server.headers, self.ctx.timeout)
        try:
            client.wait_exit(client.start(["/bin/true"]))
        finally:
            client.close()

    def _reference_cycle(self, server: Websocketd) -> None:
        conn = Conn(server.url, server.headers, self.ctx.timeout)
        try:
            while True:
                conn.recv()
        except Closed:
            pass
        finally:
            conn.drop()

    def run_procwire(self, server: Procwire, deadline: float) -> dict[str, float]:
        return self._loop(lambda: self._procwire_cycle(server), deadline)

    def run_reference(self, server: Websocketd | None, deadline: float) -> dict[str, float]:
        assert server is not None
        return self._loop(lambda: self._reference_cycle(server), deadline)

    def _loop(self, cycle, deadline: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
        for _ in range(WARM_UP):
            cycle()
        done, started = 0, time.perf_counter()
        while done < self.opts.cycle_count and before(deadline):
            cycle()
            done += 1
        if done < self.opts.cycle_count:
            self.note(f"a round stopped at the time cap after {done} of {self.opts.cycle_count} cycles")
        return {"rate": done / (time.perf_counter() - started)}
