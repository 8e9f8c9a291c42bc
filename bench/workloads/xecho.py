"""xecho: echo through a kept ``cat`` from a connection on another worker (issue 10).

One server with ``WORKERS=2`` and ``REDIS_URL``.  Each round a connection
starts ``cat`` with ``on_disconnect: "keep"`` and detaches; then, in an
order that alternates from round to round, a connection on the cat's worker
and one on the other worker (connected again until ``hello`` names the
other node, bounded) each attach (from the current offset: nothing to
replay), time ``--echo-count`` round trips of a short line (a ``write``
notification in, its ``output`` back) and detach.  Across workers the
write travels as a request over Redis pub/sub to the cat's worker, and the
output comes back through the process's Redis stream (XADD there, a
blocking XREAD on the reader's worker).  The reference is the same-worker
figure of the same round, same cat, same server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import timeline
from bench.client import TEXT, ProcwireClient
from bench.results import PROCWIRE, Metric, at_most_ratio, percentile
from bench.servers import Procwire, Server
from bench.workloads.cluster import TwoWorkers, connect, connect_where
from bench.workloads.echo import timed_round_trips

SAME = "same worker as the cat (same round, same cat)"


class CrossEcho(TwoWorkers):
    name = "xecho"
    reference_label = SAME
    uses_websocketd = False
    redis_variant = False
    timeline_starts_at = "client: write sent"
    description = (
        "round trip of a short line through a kept `cat` (WORKERS=2, REDIS_URL): attached from a connection on "
        "the other worker (write over Redis pub/sub, output from the Redis stream) against one on the cat's "
        "worker, alternating, same server and cat"
    )

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.round = 0
        self.client_events: list[tuple[str, int]] = []
        self.owner_pid = 0

    def metrics(self) -> list[Metric]:
        return [
            Metric(
                "cross_p50",
                "median round trip, from the other worker",
                "µs",
                "lower",
                at_most_ratio(3.0),
                versus=PROCWIRE,
                versus_key="same_p50",
                versus_label=SAME,
            ),
            Metric(
                "cross_p99",
                "p99 round trip, from the other worker",
                "µs",
                "lower",
                versus=PROCWIRE,
                versus_key="same_p99",
                versus_label=SAME,
            ),
            Metric("attempts", "connections until one landed on the other worker", "", None, versus=None),
        ]

    def start_server(self, side: str) -> Server | None:
        return self.ctx.procwire(self.ctx.redis_env(workers=2))

    # -- the timeline: both workers' probes and the client's, merged in time order --------

    def side_env(self, side: str) -> dict[str, str]:
        return {**self.ctx.redis_env(workers=2), "BENCH_TIMELINE_CLUSTER": "1"}

    def run_timeline(self, server: Procwire, deadline: float) -> None:
        """Round trips from the other worker only, the client noting when each write
        leaves and when its output is in (CLOCK_MONOTONIC, like the workers' probes)."""
        line = (self.opts.echo_line + "\n").encode()
        self.client_events = []
        with ExitStack() as stack:
            starter, home = connect(server, self.ctx.timeout)
            stack.callback(starter.conn.drop)
            self.owner_pid = int(home.rsplit(":", 1)[1])
            proc = starter.start(["cat"], TEXT, on_disconnect="keep")
            starter.call("detach", {"proc": proc})
            away, _, _ = connect_where(server, self.ctx.timeout, lambda node: node != home, "the other worker")
            stack.callback(away.conn.drop)
            away.call("attach", {"proc": proc})
            echo = _echo(away, proc, line, [])

            def noted() -> None:
                self.client_events.append(("client: write sent", time.perf_counter_ns()))
                echo()
                self.client_events.append(("client: output in", time.perf_counter_ns()))

            timed_round_trips(self, noted, deadline)
            away.call("close_stdin", {"proc": proc})
            away.wait_exit(proc)

    def timeline_phases(self, events: list[tuple[str, int]]) -> tuple[list[timeline.Phase], int]:
        return timeline.path_phases(events, timeline.CLUSTER_PATH)

    def timeline_events(self, events_file: Path) -> dict[str, Any]:
        events: list[tuple[str, int]] = list(self.client_events)
        missing: set[str] = set()
        for path in events_file.parent.glob(f"{events_file.name}.*"):
            recorded = json.loads(path.read_text())
            role = "owner" if int(path.suffix[1:]) == self.owner_pid else "reader"
            events += [(f"{role}: {name}", at) for name, at in recorded["events"]]
            missing.update(recorded["missing"])
            path.unlink()
        return {"events": sorted(events, key=lambda event: event[1]), "missing": sorted(missing)}

    def run_procwire(self, server: Procwire, deadline: float) -> dict[str, float]:
        line = (self.opts.echo_line + "\n").encode()
        timeout = self.ctx.timeout
        with ExitStack() as stack:
            starter, home = connect(server, timeout)
            stack.callback(starter.conn.drop)
            proc = starter.start(["cat"], TEXT, on_disconnect="keep")
            starter.call("detach", {"proc": proc})
            away, _, attempts = connect_where(server, timeout, lambda node: node != home, "the other worker")
            stack.callback(away.conn.drop)
            readers = [("same", starter), ("cross", away)]
            if self.round % 2:
                readers.reverse()
            self.round += 1
            values: dict[str, float] = {"attempts": attempts}
            echoed = 0
            for label, client in readers:
                client.call("attach", {"proc": proc, "offset": echoed})
                done: list[float] = []
                latencies = timed_round_trips(self, _echo(client, proc, line, done), deadline)
                client.call("detach", {"proc": proc})
                echoed += len(done) * len(line)
                values[f"{label}_p50"] = percentile(latencies, 0.5) * 1e6
                values[f"{label}_p99"] = percentile(latencies, 0.99) * 1e6
            starter.call("close_stdin", {"proc": proc})
            starter.call("wait", {"proc": proc, "timeout": timeout})
            starter.call("release", {"proc": proc})
            starter.close()
            away.close()
            return values


def _echo(client: ProcwireClient, proc: int, line: bytes, done: list[float]) -> Callable[[], None]:
    """One round trip through ``proc``; ``done`` gets an entry per completed one."""

    def round_trip() -> None:
        client.echo(proc, line)
        done.append(1.0)

    return round_trip
