"""fan-out: many processes each streaming at once, while one client echoes through ``cat``.

Every stream has its own connection (procwire: one ``start`` per connection;
websocketd: one program per connection), read by ``--fanout-clients`` load
clients (``bench.drain``, each its own process: one selector loop over raw
sockets that decodes frame headers only), so that the server and not the
client is the limit; each client reports the CPU it used.  The echo probe
is another process (``bench.probe``) timing a round trip every
``--fanout-echo-interval`` seconds from the moment the streams are opened
until the last one has ended.  The probe runs at a higher priority
(``--fanout-probe-nice``, as root) so that on a small machine its
percentiles measure the server rather than the load clients competing for
the same cores.  procwire runs with one worker and, as a side of its own,
with ``WORKERS=2`` (no Redis: each connection's processes are its worker's).
websocketd serves both programs from one ``--binary --dir`` (``/cat`` and
``/stream``).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import time

from bench.results import Metric, at_least_ratio, at_most_ratio, exactly
from bench.servers import ROOT, Procwire, Server, Websocketd
from bench.workloads.base import Workload

TWO_WORKERS = "workers2"

PROBE_TIMEOUT = 30.0


class FanOut(Workload):
    name = "fanout"
    reference_label = "websocketd --binary (cat, head)"
    profiled = True

    @property
    def description(self) -> str:  # type: ignore[override]
        return (
            f"{self.opts.fanout_procs} processes each streaming {self.opts.fanout_bytes:,} bytes at once "
            "while one client echoes through `cat`"
        )

    @property
    def rounds(self) -> int:
        return self.opts.fanout_rounds

    @property
    def redis_rounds(self) -> int:
        """One round with Redis unless ``--redis-rounds`` asks more: 5 GB streamed per round."""
        return self.one_redis_round()

    def sides(self) -> list[str]:
        return [*super().sides(), TWO_WORKERS]

    def labels(self) -> dict[str, str]:
        return {**super().labels(), TWO_WORKERS: "procwire, WORKERS=2"}

    def side_rounds(self, side: str) -> int:
        return self.rounds if side == TWO_WORKERS else super().side_rounds(side)

    def start_server(self, side: str) -> Server | None:
        if side == TWO_WORKERS:
            return self.ctx.procwire({"PROCWIRE_WORKERS": "2"})
        return super().start_server(side)

    def run_side(self, side: str, server: Server | None, deadline: float) -> dict[str, float]:
        if side == TWO_WORKERS:
            self.side = side
            assert isinstance(server, Procwire)
            return self.run_procwire(server, deadline)
        return super().run_side(side, server, deadline)

    def metrics(self) -> list[Metric]:
        return [
            Metric("p99", "echo p99 under load", "ms", "lower", at_most_ratio(1.0)),
            Metric("p90", "echo p90 under load", "ms", "lower"),
            Metric("p50", "echo median under load", "ms", "lower", at_most_ratio(3.0)),
            Metric("delivered", "bytes delivered", "%", None, exactly(100, "100 %")),
            Metric("throughput", "aggregate throughput", "MB/s", "higher", at_least_ratio(1.0)),
            Metric("client_cpu", "load clients' CPU, share of a core each", "", None, versus=None, fmt=_percent),
            Metric("p99", "WORKERS=2: echo p99 under load", "ms", "lower", at_most_ratio(0.7), side=TWO_WORKERS),
            Metric("p90", "WORKERS=2: echo p90 under load", "ms", "lower", side=TWO_WORKERS),
            Metric("p50", "WORKERS=2: echo median under load", "ms", "lower", at_most_ratio(2.0), side=TWO_WORKERS),
            Metric("delivered", "WORKERS=2: bytes delivered", "%", None, exactly(100, "100 %"), side=TWO_WORKERS),
            Metric("throughput", "WORKERS=2: aggregate throughput", "MB/s", "higher", side=TWO_WORKERS),
        ]

    def stream_argv(self) -> list[str]:
        return ["head", "-c", str(self.opts.fanout_bytes), "/dev/zero"]

    def start_reference(self) -> Websocketd | None:
        directory = self.ctx.work_dir / "websocketd-fanout"
        directory.mkdir(exist_ok=True)
        cat = directory / "cat"
        if not cat.exists():
            cat.symlink_to(shutil.which("cat") or "/bin/cat")
        stream = directory / "stream"
        stream.write_text("#!/bin/sh\nexec " + " ".join(self.stream_argv()) + "\n")
        stream.chmod(0o755)
        return self.ctx.websocketd_server([f"--dir={directory}"], binary=True)

    def run_procwire(self, server: Procwire, deadline: float) -> dict[str, float]:
        self.note(
            f"the echo probe (its own process, nice {self.opts.fanout_probe_nice}) sends one line every "
            f"{self.opts.fanout_echo_interval * 1000:g} ms; one connection per stream, read by "
            f"{self.opts.fanout_clients} load-client processes (bench/drain.py), each one selector loop over raw "
            "sockets"
        )
        params = {"argv": self.stream_argv(), "stdin": "null", **self.output_mode.start_params}
        target = ["--url", server.url, *[f"--header={h}" for h in server.headers]]
        return self._run(
            ["--kind", "procwire", *target],
            ["--kind", "procwire", *target, f"--params={json.dumps(params)}"],
            deadline,
        )

    def run_reference(self, server: Websocketd | None, deadline: float) -> dict[str, float]:
        assert server is not None
        return self._run(
            ["--kind", "websocketd", "--url", server.url + "cat"],
            ["--kind", "websocketd", "--url", server.url + "stream"],
            deadline,
        )

    def _helper(self, module: str, args: list[str], deadline: float) -> subprocess.Popen:
        """A process of the suite's own (the probe, a load client), told when to begin."""
        return self.ctx.supervisor.start(
            [
                sys.executable,
                "-m",
                module,
                *args,
                f"--max-seconds={max(deadline - time.monotonic(), 1):.0f}",
                f"--timeout={self.ctx.timeout}",
            ],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def _run(self, probe_args: list[str], drain_args: list[str], deadline: float) -> dict[str, float]:
        probe_args = [
            *probe_args,
            f"--interval={self.opts.fanout_echo_interval}",
            f"--nice={self.opts.fanout_probe_nice}",
        ]
        shares = _shares(self.opts.fanout_procs, self.opts.fanout_clients)
        probe = self._helper("bench.probe", probe_args, deadline)
        drains = [self._helper("bench.drain", [*drain_args, f"--connections={n}"], deadline) for n in shares]
        try:
            for helper in [probe, *drains]:
                if _read_line(helper, PROBE_TIMEOUT) != "ready":
                    raise RuntimeError("a helper of the fan-out workload did not start")
            _tell(probe, "go")
            started = time.perf_counter()
            for drain in drains:
                _tell(drain, "go")
            loads = [json.loads(_read_line(drain, max(deadline - time.monotonic(), 1)) or "{}") for drain in drains]
            elapsed = time.perf_counter() - started
            _tell(probe, "stop")
            echo = json.loads(_read_line(probe, PROBE_TIMEOUT) or "{}")
        finally:
            for helper in [probe, *drains]:
                self.ctx.supervisor.stop(helper, grace=5)
        if echo.get("errors"):
            self.note(f"echo probe errors: {echo['errors'][:3]}")
        if not echo.get("count"):
            raise RuntimeError("the echo probe measured nothing")
        ended = sum(load.get("ended", 0) for load in loads)
        if ended < self.opts.fanout_procs:
            self.note(f"{self.opts.fanout_procs - ended} streams were still running at the time cap")
        delivered = sum(load.get("received", 0) for load in loads)
        expected = self.opts.fanout_procs * self.opts.fanout_bytes
        return {
            "p99": echo["p99_ms"],
            "p90": echo["p90_ms"],
            "p50": echo["p50_ms"],
            "delivered": delivered / expected * 100,
            "throughput": delivered / elapsed / 1e6,
            "client_cpu": sum(load.get("cpu_seconds", 0) for load in loads) / elapsed / len(loads),
            "echoes": echo["count"],
        }


def _percent(value: float) -> str:
    return f"{value:.0%}"


def _shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` nearly equal counts (none of them empty)."""
    parts = max(1, min(parts, total))
    return [total // parts + (index < total % parts) for index in range(parts)]


def _tell(process: subprocess.Popen, line: str) -> None:
    with contextlib.suppress(OSError):
        assert process.stdin is not None
        process.stdin.write(line.encode() + b"\n")
        process.stdin.flush()


def _read_line(process: subprocess.Popen, timeout: float) -> str | None:
    assert process.stdout is not None
    if not select.select([process.stdout], [], [], timeout)[0]:
        return None
    return process.stdout.readline().decode().strip()
