"""parallel: 16 clients at once, cycling connections or starting processes (issue 10).

Four servers, each round in a rotating order: procwire with ``WORKERS=2``
and ``REDIS_URL`` (the cluster configuration, one worker per core here),
procwire ``WORKERS=1`` (the default, no Redis), procwire ``WORKERS=2``
without Redis, and ``websocketd /bin/true`` (Go: it uses every core).  Two
phases per round, each ``--parallel-seconds`` long:

- cycles: ``--parallel-clients`` connections at once, each: connect, start
  /bin/true, its exit, closing handshake, again (websocketd: connect, it
  runs /bin/true and closes);
- starts: as many connections opened beforehand, each: ``start`` of
  /bin/true, its exit, again (websocketd has no such thing: its parallel
  cycle rate, one program per connection, is the informational reference).

The clients are ``--parallel-processes`` processes of bench/parallel_client.py
(raw sockets, one selector loop each: little CPU of their own), started and
set up before the clock starts.  Every ``hello`` names the worker serving
the connection: the rows give the busier worker's share.  Each phase also
notes how busy the machine was (/proc/stat) and the CPU of the servers,
the clients and Redis: on two cores, that is where the time goes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.profiling import cpu_seconds
from bench.results import PROCWIRE, REFERENCE, Metric, at_least_ratio
from bench.servers import ROOT, Procwire, Server, Websocketd
from bench.workloads.base import Workload, check

WORKERS1, WORKERS2 = "workers1", "workers2"
READY_TIMEOUT = 30.0


def _machine_busy() -> tuple[float, float]:
    """Busy and total jiffies of every CPU so far (/proc/stat's first line)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


class Parallel(Workload):
    name = "parallel"
    reference_label = "websocketd /bin/true"
    redis_variant = False
    profiled = True  # py-spy on one of the two workers (WORKERS=2, REDIS_URL) during a cycles phase

    @property
    def description(self) -> str:  # type: ignore[override]
        return (
            f"{self.clients()} clients at once for {self.opts.parallel_seconds:g} s: connect-start-exit-close "
            f"cycles, then starts of /bin/true over open connections; procwire WORKERS=2 with REDIS_URL against "
            "WORKERS=1, WORKERS=2 without Redis and websocketd"
        )

    @property
    def rounds(self) -> int:
        return self.opts.parallel_rounds

    def clients(self) -> int:
        return self.opts.parallel_clients

    def sides(self) -> list[str]:
        sides = [PROCWIRE, WORKERS1, REFERENCE]
        if not self.opts.parallel_no_workers2:
            sides.insert(2, WORKERS2)
        return sides if self.ctx.with_redis else [side for side in sides if side != PROCWIRE]

    def labels(self) -> dict[str, str]:
        return {
            PROCWIRE: "procwire WORKERS=2, REDIS_URL",
            WORKERS1: "procwire WORKERS=1",
            WORKERS2: "procwire WORKERS=2, no Redis",
            REFERENCE: self.reference_label,
        }

    def uses_redis(self, side: str) -> bool:
        return side == PROCWIRE

    def metrics(self) -> list[Metric]:
        w2r, cycles, starts = "WORKERS=2 + Redis", "parallel cycles", "parallel starts"
        return [
            Metric("cycles", f"{cycles}, {w2r}", "cycles/s", "higher", at_least_ratio(1.0)),
            Metric("cycles", f"{cycles}, {w2r}", "cycles/s", "higher", at_least_ratio(1.6), versus=WORKERS1),
            Metric("cycles", f"{cycles}, WORKERS=2 no Redis", "cycles/s", "higher", side=WORKERS2, versus=WORKERS1),
            Metric("cycles", f"{cycles}, WORKERS=1", "cycles/s", "higher", side=WORKERS1),
            Metric("starts", f"{starts}, {w2r}", "processes/s", "higher", at_least_ratio(1.6), versus=WORKERS1),
            Metric("starts", f"{starts}, WORKERS=2 no Redis", "processes/s", "higher", side=WORKERS2, versus=WORKERS1),
            Metric(
                "starts",
                f"{starts}, {w2r}",
                "processes/s",
                "higher",
                versus_key="cycles",
                versus_label="websocketd /bin/true (its parallel cycles)",
            ),
            Metric("cycles_busier", f"cycle connections on the busier worker, {w2r}", "%", None, versus=None),
            Metric("starts_busier", f"open connections on the busier worker, {w2r}", "%", None, versus=None),
            Metric(
                "cycles_busier",
                "cycle connections on the busier worker, WORKERS=2 no Redis",
                "%",
                None,
                side=WORKERS2,
                versus=None,
            ),
            Metric(
                "starts_busier",
                "open connections on the busier worker, WORKERS=2 no Redis",
                "%",
                None,
                side=WORKERS2,
                versus=None,
            ),
            Metric("cycles_busy", f"machine busy during {cycles}, {w2r}", "%", None, versus=REFERENCE),
        ]

    def start_server(self, side: str) -> Server | None:
        if side == REFERENCE:
            return self.start_reference()
        workers = 1 if side == WORKERS1 else 2
        env = self.ctx.redis_env(workers) if side == PROCWIRE else {"PROCWIRE_WORKERS": str(workers)}
        return self.ctx.procwire(env)

    def side_env(self, side: str) -> dict[str, str]:
        return {}

    def start_reference(self) -> Websocketd | None:
        return self.ctx.websocketd_server(["/bin/true"])

    def run_side(self, side: str, server: Server | None, deadline: float) -> dict[str, float]:
        assert server is not None
        values: dict[str, float] = {}
        phases = ["cycles"] if side == REFERENCE else ["cycles", "starts"]
        for phase in phases:
            check(deadline)
            values.update(self._phase(side, server, phase, deadline))
        return values

    def run_profiled(self, server: Procwire, deadline: float) -> None:
        self._phase(PROCWIRE, server, "cycles", deadline)

    def _config(self, server: Server, mode: str, connections: int) -> dict[str, Any]:
        token = server.token if isinstance(server, Procwire) else None
        return {
            "port": server.port,
            "path": "/ws" if isinstance(server, Procwire) else "/",
            "token": token,
            "mode": mode,
            "connections": connections,
            "seconds": self.opts.parallel_seconds,
            "timeout": self.ctx.timeout,
        }

    def _phase(self, side: str, server: Server, phase: str, deadline: float) -> dict[str, float]:
        """One timed phase: the client processes set up, then all started at once."""
        mode = "websocketd" if side == REFERENCE else ("cycle" if phase == "cycles" else "starts")
        per_process = _split(self.clients(), self.opts.parallel_processes)
        clients: list[subprocess.Popen] = []
        try:
            for connections in per_process:
                config = json.dumps(self._config(server, mode, connections))
                clients.append(
                    self.ctx.supervisor.start(
                        [sys.executable, "-m", "bench.parallel_client", config],
                        cwd=ROOT,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                    )
                )
            ready_by = time.monotonic() + READY_TIMEOUT
            for client in clients:
                assert client.stdout is not None
                line = client.stdout.readline()
                if line.strip() != b"ready" or time.monotonic() > ready_by:
                    raise RuntimeError(f"a client process did not get ready: {line!r}")
            pids = server.measured_pids()
            redis = [self.ctx.redis().measured_pid()] if self.uses_redis(side) else []
            servers_before = sum(sum(cpu_seconds(pid)) for pid in pids)
            redis_before = sum(sum(cpu_seconds(pid)) for pid in redis)
            busy_before, total_before = _machine_busy()
            started = time.monotonic()
            for client in clients:
                assert client.stdin is not None
                client.stdin.write(b"go\n")
                client.stdin.flush()
            reports = []
            for client in clients:
                assert client.stdout is not None
                reports.append(json.loads(client.stdout.readline() or b"{}"))
                client.wait(timeout=self.ctx.timeout)
            elapsed = time.monotonic() - started
            busy_after, total_after = _machine_busy()
            servers_cpu = sum(sum(cpu_seconds(pid)) for pid in pids) - servers_before
            redis_cpu = sum(sum(cpu_seconds(pid)) for pid in redis) - redis_before
        finally:
            for client in clients:
                self.ctx.supervisor.stop(client, grace=5.0)
        errors = [error for report in reports for error in report.get("errors", [])]
        if errors or any("done" not in report for report in reports):
            raise RuntimeError(f"{phase}: {'; '.join(errors) or 'a client process failed'}")
        done = sum(report["done"] for report in reports)
        nodes: Counter[str] = Counter()
        for report in reports:
            nodes.update(report["nodes"])
        seconds = self.opts.parallel_seconds
        values = {
            phase: done / seconds,
            f"{phase}_busy": 100 * (busy_after - busy_before) / max(total_after - total_before, 1),
            f"{phase}_server_cores": servers_cpu / elapsed,
            f"{phase}_client_cores": sum(report["cpu"] for report in reports) / elapsed,
        }
        if redis:
            values[f"{phase}_redis_cores"] = redis_cpu / elapsed
        if isinstance(server, Procwire) and server.workers > 1:
            values[f"{phase}_busier"] = 100 * max(nodes.values(), default=0) / max(sum(nodes.values()), 1)
            values[f"{phase}_workers_seen"] = len(nodes)
        return values


def _split(total: int, parts: int) -> list[int]:
    parts = max(1, min(parts, total))
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]
