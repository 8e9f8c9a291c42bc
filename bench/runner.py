"""Run one workload: both servers, alternating, several rounds, within its time cap."""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path

from bench import timeline
from bench.procs import raise_if_interrupted
from bench.profiling import Profiler, cpu_seconds
from bench.results import WorkloadResult
from bench.servers import ROOT, WEBSOCKETD_INSTALL_HINT, Procwire, Server
from bench.workloads import Capped, Context, Workload

PROCWIRE, REFERENCE = "procwire", "reference"


def _describe(values: dict[str, float]) -> str:
    return ", ".join(f"{key}={value:.4g}" for key, value in values.items())


class _Servers:
    """The workload's servers, started when first needed (again after a crash)."""

    def __init__(self, workload: Workload, ctx: Context) -> None:
        self.workload = workload
        self.ctx = ctx
        self.procwire: Procwire | None = None
        self.reference: Server | None = None

    def get(self, side: str) -> Server | None:
        if side == PROCWIRE:
            if self.procwire is None or not self.procwire.alive():
                self.stop(PROCWIRE)
                self.procwire = self.ctx.procwire(self.workload.procwire_env())
            return self.procwire
        if self.reference is None or not self.reference.alive():
            self.stop(REFERENCE)
            self.reference = self.workload.start_reference()
        return self.reference

    def stop(self, side: str) -> None:
        server = self.procwire if side == PROCWIRE else self.reference
        if server is not None:
            server.stop()
        if side == PROCWIRE:
            self.procwire = None
        else:
            self.reference = None

    def stop_all(self) -> None:
        self.stop(PROCWIRE)
        self.stop(REFERENCE)


def run_workload(workload: Workload, ctx: Context, profiler: Profiler | None) -> WorkloadResult:
    opts = ctx.opts
    result = WorkloadResult(
        name=workload.name,
        description=workload.description,
        procwire_label="procwire",
        reference_label=workload.reference_label,
        metrics=workload.metrics(),
    )
    with_reference = not workload.uses_websocketd or (ctx.websocketd is not None and not opts.no_reference)
    if not with_reference:
        result.reference = None
        result.notes.append(
            "reference skipped (--no-reference)"
            if opts.no_reference
            else f"reference skipped: {WEBSOCKETD_INSTALL_HINT}"
        )
    started = time.monotonic()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    deadline = started + opts.cap
    servers = _Servers(workload, ctx)
    ctx.log(f"== {workload.name}: {workload.description} ({workload.rounds} rounds, cap {opts.cap:g} s)")
    try:
        for index in range(workload.rounds):
            sides = [PROCWIRE, REFERENCE] if index % 2 == 0 else [REFERENCE, PROCWIRE]
            for side in sides:
                if side == REFERENCE and not with_reference:
                    continue
                raise_if_interrupted()
                if time.monotonic() >= deadline:
                    raise Capped(f"stopped at the time cap ({opts.cap:g} s) in round {index + 1}")
                _run_side(workload, ctx, servers, side, index, deadline, result)
        if profiler is not None and workload.profiled:
            _profile(workload, ctx, servers, profiler, result, started + opts.cap * 1.5)
        if workload.timeline_starts_at is not None and not opts.no_timeline:
            _timeline(workload, ctx, result, started + opts.cap * 1.5)
    except Capped as capped:
        result.notes.append(str(capped))
        ctx.log(f"   {capped}")
    finally:
        servers.stop_all()
    result.notes = [*result.notes, *workload.notes, f"load average (1/5/15 min) when it started: {load}"]
    result.seconds = time.monotonic() - started
    return result


def _run_side(
    workload: Workload,
    ctx: Context,
    servers: _Servers,
    side: str,
    index: int,
    deadline: float,
    result: WorkloadResult,
) -> None:
    label = "procwire" if side == PROCWIRE else workload.reference_label
    try:
        server = servers.get(side)
        pid = server.measured_pid() if server is not None else None
        cpu_before, started = sum(cpu_seconds(pid)) if pid else 0.0, time.monotonic()
        if side == PROCWIRE:
            assert isinstance(server, Procwire)
            values = workload.run_procwire(server, deadline)
        else:
            values = workload.run_reference(server, deadline)
        if pid:  # the server process alone, not the programs it runs
            values["server_cpu"] = (sum(cpu_seconds(pid)) - cpu_before) / (time.monotonic() - started)
        if side == PROCWIRE:
            result.procwire.append(values)
        else:
            assert result.reference is not None
            result.reference.append(values)
        ctx.log(f"   round {index + 1} {label}: {_describe(values)}")
    except Capped:
        raise
    except Exception as error:
        raise_if_interrupted()
        message = f"round {index + 1} {label} failed: {type(error).__name__}: {error}"
        result.notes.append(message)
        ctx.log(f"   {message}")
        with open(ctx.work_dir / "errors.log", "a") as log:
            log.write(f"[{workload.name}] {message}\n{traceback.format_exc()}\n")
    finally:
        if workload.fresh_servers:
            servers.stop(side)


def _profile(
    workload: Workload,
    ctx: Context,
    servers: _Servers,
    profiler: Profiler,
    result: WorkloadResult,
    deadline: float,
) -> None:
    """One more procwire round, untimed, with py-spy sampling the worker."""
    try:
        server = servers.get(PROCWIRE)
        assert isinstance(server, Procwire)
        with profiler.record(server.measured_pid(), workload.name) as summary:
            until = time.monotonic() + ctx.opts.profile_seconds
            while True:  # long enough for a useful number of samples
                workload.run_profiled(server, deadline)
                if time.monotonic() >= min(until, deadline):
                    break
        result.profile = summary
        ctx.log(
            f"   profiled: {summary.get('samples', 0)} samples, worker CPU "
            f"{summary.get('cpu_user', 0):.0%} user + {summary.get('cpu_system', 0):.0%} system"
        )
    except Capped:
        raise
    except Exception as error:
        result.notes.append(f"profiling failed: {type(error).__name__}: {error}")
        ctx.log(f"   profiling failed: {error}")


def _timeline(workload: Workload, ctx: Context, result: WorkloadResult, deadline: float) -> None:
    """One more procwire round, untimed, on a server whose worker notes when
    each step of an operation ends (bench/timeline.py)."""
    assert workload.timeline_starts_at is not None
    events_file = ctx.work_dir / f"timeline-{workload.name}.json"
    events_file.unlink(missing_ok=True)
    env = {**workload.procwire_env(), "BENCH_TIMELINE_FILE": str(events_file)}
    try:
        server = ctx.procwire(env, config=str(ROOT / "bench" / "timeline_gunicorn.py"))
        try:
            workload.run_timeline(server, deadline)
        finally:
            server.stop()
        recorded = json.loads(events_file.read_text())
        steps, operations = timeline.phases([tuple(event) for event in recorded["events"]], workload.timeline_starts_at)
        result.timeline = {
            "operations": operations,
            "missing": recorded["missing"],
            "phases": [(phase.what, phase.median_us) for phase in steps],
        }
        ctx.log(f"   timeline: {operations} operations, {len(steps)} steps")
    except Capped:
        raise
    except Exception as error:
        result.notes.append(f"timeline failed: {type(error).__name__}: {error}")
        ctx.log(f"   timeline failed: {error}")
