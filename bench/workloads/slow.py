"""slow reader: the client stops reading a large stream for a while, then resumes.

The stream is ``seq 1 … | head -c N`` (ordered, not all zeros, so a lost or
reordered chunk changes the sha256, which is computed beforehand from the
same command run locally).  The client reads ``--slow-pause-after`` bytes,
stops reading for ``--slow-pause`` seconds, then reads the rest.  The server's
VmRSS is sampled every 0.1 s from before the start to the end; the figure is
its largest growth over the value before the start.
"""

from __future__ import annotations

import hashlib
import subprocess
import time

from bench.client import Closed, Conn, ProcwireClient
from bench.results import Metric, at_most, exactly
from bench.servers import Procwire, Server, Websocketd
from bench.workloads.base import Workload, check

SAMPLE_EVERY = 0.1
CHUNK = 1 << 20


class SlowReader(Workload):
    name = "slow"
    reference_label = "websocketd --binary"
    fresh_servers = True

    @property
    def description(self) -> str:  # type: ignore[override]
        return (
            f"{self.opts.slow_bytes:,}-byte stream; the client stops reading for {self.opts.slow_pause:g} s "
            f"after {self.opts.slow_pause_after:,} bytes, then resumes"
        )

    @property
    def rounds(self) -> int:
        return self.opts.slow_rounds

    @property
    def redis_rounds(self) -> int:
        """One round with Redis unless ``--redis-rounds`` asks more: a round pauses 10 s."""
        return self.one_redis_round()

    def metrics(self) -> list[Metric]:
        return [
            Metric("rss_growth", "server RSS growth", "MiB", "lower", at_most(64, "MiB")),
            Metric("intact", "bytes complete and in order (sha256)", "", None, exactly(1, "yes"), fmt=_yes_no),
        ]

    def argv(self) -> list[str]:
        return ["sh", "-c", f"seq 1 999999999999999 | head -c {self.opts.slow_bytes}"]

    def expected_sha256(self) -> str:
        key = f"slow-sha256-{self.opts.slow_bytes}"
        if key not in self.ctx.cache:
            process = self.ctx.supervisor.start(self.argv(), stdout=subprocess.PIPE)
            digest = hashlib.sha256()
            try:
                assert process.stdout is not None
                while chunk := process.stdout.read(CHUNK):
                    digest.update(chunk)
            finally:
                self.ctx.supervisor.stop(process)
            self.ctx.cache[key] = digest.hexdigest()
        return str(self.ctx.cache[key])

    def start_reference(self) -> Websocketd | None:
        return self.ctx.websocketd_server(self.argv(), binary=True)

    def run_procwire(self, server: Procwire, deadline: float) -> dict[str, float]:
        expected = self.expected_sha256()
        client = ProcwireClient(server.url, server.headers, self.ctx.timeout)
        meter = _Meter(server)
        try:
            proc = client.start(self.argv(), self.output_mode, stdin="null")

            def chunks():  # type: ignore[no-untyped-def]
                while True:
                    kind, value = client.next()
                    if kind == "output" and value.proc == proc:
                        yield value.data
                    elif kind == "exit" and value["proc"] == proc:
                        return

            return self._read(chunks(), meter, expected, deadline)
        finally:
            client.close()

    def run_reference(self, server: Websocketd | None, deadline: float) -> dict[str, float]:
        assert server is not None
        expected = self.expected_sha256()
        meter = _Meter(server)
        conn = Conn(server.url, server.headers, self.ctx.timeout)

        def chunks():  # type: ignore[no-untyped-def]
            try:
                while True:
                    yield conn.recv()[1]
            except Closed:
                return

        try:
            return self._read(chunks(), meter, expected, deadline)
        finally:
            conn.drop()

    def _read(self, chunks, meter: _Meter, expected: str, deadline: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
        digest = hashlib.sha256()
        received = 0
        paused = False
        started = time.perf_counter()
        for data in chunks:
            digest.update(data)
            received += len(data)
            meter.maybe_sample()
            if not paused and received >= self.opts.slow_pause_after:
                paused = True
                meter.idle(self.opts.slow_pause)
            check(deadline)
        elapsed = time.perf_counter() - started
        meter.sample()
        if received != self.opts.slow_bytes:
            self.note(f"a round received {received:,} of {self.opts.slow_bytes:,} bytes")
        return {
            "rss_growth": meter.growth_kib() / 1024,
            "intact": float(received == self.opts.slow_bytes and digest.hexdigest() == expected),
            "seconds": elapsed,
        }


class _Meter:
    """The largest VmRSS of one server process, sampled over time."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.baseline = server.rss_kib()
        self.peak = self.baseline
        self.last = time.monotonic()

    def sample(self) -> None:
        self.peak = max(self.peak, self.server.rss_kib())
        self.last = time.monotonic()

    def maybe_sample(self) -> None:
        if time.monotonic() - self.last >= SAMPLE_EVERY:
            self.sample()

    def idle(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            time.sleep(SAMPLE_EVERY)
            self.sample()

    def growth_kib(self) -> int:
        return self.peak - self.baseline


def _yes_no(value: float) -> str:
    return "yes" if value == 1 else "no"
