"""echo: round trip of a short line through ``cat`` over an open connection.

procwire: the line goes in as a ``write`` notification (JSON-RPC, no answer)
and is timed until its bytes are back in ``output``; when the server has
binary frames, a second row sends it as a binary stdin frame and gets it
back as a binary output frame.  websocketd: ``websocketd cat`` in text mode
(it appends the newline and sends each line back as one message).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing

from bench.client import BINARY, TEXT, Conn, ProcwireClient
from bench.results import Metric, at_most_ratio, percentile
from bench.servers import Procwire, Websocketd
from bench.workloads.base import BINARY_FAILS_WITH_REDIS, Workload, before

WARM_UP = 100


class Echo(Workload):
    name = "echo"
    description = (
        "round trip of a short line through `cat` over an open connection (procwire: a `write` notification "
        "answered by an `output` notification, or a binary stdin frame answered by a binary output frame)"
    )
    reference_label = "websocketd cat (text)"
    profiled = True

    def variants(self) -> list[str]:
        return ["notify", "binary"] if self.ctx.binary and self.opts.stream_mode in ("auto", "binary") else ["notify"]

    def side_variants(self) -> list[str]:
        """The variants that can run on the current side (binary frames may fail with Redis)."""
        if self.uses_redis(self.side) and not self.ctx.redis_binary:
            self.note(BINARY_FAILS_WITH_REDIS)
            return ["notify"]
        return self.variants()

    def metrics(self) -> list[Metric]:
        metrics = [
            Metric("p50", "median round trip, `write` notification", "µs", "lower", at_most_ratio(1.0)),
            Metric("p99", "p99 round trip, `write` notification", "µs", "lower"),
        ]
        if "binary" in self.variants():
            metrics += [
                Metric("p50_binary", "median round trip, binary frames", "µs", "lower", at_most_ratio(1.0)),
                Metric("p99_binary", "p99 round trip, binary frames", "µs", "lower"),
            ]
        return metrics

    def start_reference(self) -> Websocketd | None:
        return self.ctx.websocketd_server(["cat"])

    def run_procwire(self, server: Procwire, deadline: float) -> dict[str, float]:
        values: dict[str, float] = {}
        for variant in self.side_variants():
            suffix = "" if variant == "notify" else "_binary"
            p50, p99 = self._procwire_variant(server, variant == "binary", deadline)
            values.update({f"p50{suffix}": p50, f"p99{suffix}": p99})
        return values

    def _procwire_variant(self, server: Procwire, binary: bool, deadline: float) -> tuple[float, float]:
        line = (self.opts.echo_line + "\n").encode()
        with closing(ProcwireClient(server.url, server.headers, self.ctx.timeout)) as client:
            proc = client.start(["cat"], BINARY if binary else TEXT)

            def round_trip() -> None:
                client.write(proc, line, binary)
                got = 0
                while got < len(line):
                    kind, value = client.next()
                    if kind == "output" and value.proc == proc:
                        got += len(value.data)

            return _percentiles(timed_round_trips(self, round_trip, deadline))

    def run_reference(self, server: Websocketd | None, deadline: float) -> dict[str, float]:
        assert server is not None
        line = self.opts.echo_line.encode()
        conn = Conn(server.url, server.headers, self.ctx.timeout)
        try:
            latencies = timed_round_trips(self, lambda: (conn.send_text(line), conn.recv()), deadline)
        finally:
            conn.drop()
        p50, p99 = _percentiles(latencies)
        values = {"p50": p50, "p99": p99}
        if "binary" in self.variants():  # one reference figure for both procwire rows
            values.update(p50_binary=p50, p99_binary=p99)
        return values


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    return percentile(latencies, 0.5) * 1e6, percentile(latencies, 0.99) * 1e6


def timed_round_trips(workload: Workload, round_trip: Callable[[], object], deadline: float) -> list[float]:
    """The seconds of each timed round trip, after ``WARM_UP`` untimed ones."""
    latencies: list[float] = []
    for index in range(WARM_UP + workload.opts.echo_count):
        if not before(deadline):
            workload.note("a round stopped at the time cap")
            break
        started = time.perf_counter()
        round_trip()
        if index >= WARM_UP:
            latencies.append(time.perf_counter() - started)
    return latencies
