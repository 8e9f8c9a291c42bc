"""Run one workload: every side (procwire, the reference, procwire with Redis...), alternating, within its time cap."""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from bench.procs import raise_if_interrupted
from bench.profiling import Profiler, cpu_seconds
from bench.results import PROCWIRE, REDIS, REFERENCE, WorkloadResult
from bench.servers import ROOT, WEBSOCKETD_INSTALL_HINT, Procwire, Server
from bench.workloads import Capped, Context, Workload

__all__ = ["PROCWIRE", "REDIS", "REFERENCE", "run_workload"]


def _describe(values: dict[str, float]) -> str:
    return ", ".join(f"{key}={value:.4g}" for key, value in values.items())


def _cpu(pids: list[int]) -> float:
    return sum(sum(cpu_seconds(pid)) for pid in pids)


class _Servers:
    """The workload's servers, one per side, started when first needed (again after a crash)."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.running: dict[str, Server | None] = {}

    def get(self, side: str) -> Server | None:
        server = self.running.get(side)
        if side not in self.running or (server is not None and not server.alive()):
            self.stop(side)
            self.running[side] = self.workload.start_server(side)
        return self.running[side]

    def stop(self, side: str) -> None:
        server = self.running.pop(side, None)
        if server is not None:
            server.stop()

    def stop_all(self) -> None:
        for side in list(self.running):
            self.stop(side)


def _order(sides: list[str], index: int) -> list[str]:
    """The sides of round ``index``: the first round's order, rotated by one each round."""
    shift = index % len(sides) if sides else 0
    return sides[shift:] + sides[:shift]


def run_workload(workload: Workload, ctx: Context, profiler: Profiler | None) -> WorkloadResult:
    opts = ctx.opts
    sides = workload.sides()
    result = WorkloadResult(
        name=workload.name,
        description=workload.description,
        labels={side: label for side, label in workload.labels().items() if side in sides},
        metrics=workload.metrics(),
        redis_tolerance=workload.redis_tolerance if REDIS in sides else None,
    )
    for side in sides:
        if workload.needs_websocketd(side) and (ctx.websocketd is None or opts.no_reference):
            result.skipped.add(side)
            why = " (--no-reference)" if opts.no_reference else f": {WEBSOCKETD_INSTALL_HINT}"
            result.notes.append(f"{result.labels.get(side, side)} skipped{why}")
    if REDIS in sides and workload.redis_rounds < workload.rounds:
        result.notes.append(f"with REDIS_URL set: {workload.redis_rounds} of the {workload.rounds} rounds")
    started = time.monotonic()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    deadline = started + opts.cap
    servers = _Servers(workload)
    if any(workload.uses_redis(side) for side in sides):
        ctx.redis().flush()  # each workload starts on an empty Redis
    ctx.log(f"== {workload.name}: {workload.description} ({workload.rounds} rounds, cap {opts.cap:g} s)")
    try:
        for index in range(max(workload.side_rounds(side) for side in sides)):
            for side in _order(sides, index):
                if side in result.skipped or index >= workload.side_rounds(side):
                    continue
                raise_if_interrupted()
                if time.monotonic() >= deadline:
                    raise Capped(f"stopped at the time cap ({opts.cap:g} s) in round {index + 1}")
                _run_side(workload, ctx, servers, side, index, deadline, result)
        extra_deadline = started + opts.cap * 1.5
        if profiler is not None and workload.profiled:
            _profile(workload, ctx, servers, profiler, result, PROCWIRE, extra_deadline)
        if workload.timeline_starts_at is not None and not opts.no_timeline:
            _timeline(workload, ctx, result, PROCWIRE, extra_deadline)
        if result.redis_missed():  # where the time goes with Redis, for a missed target
            profile_redis = workload.profiled_if_redis_misses
            if profiler is not None and (workload.profiled if profile_redis is None else profile_redis):
                _profile(workload, ctx, servers, profiler, result, REDIS, extra_deadline + opts.cap * 0.5)
            if workload.timeline_starts_at is not None and not opts.no_timeline:
                _timeline(workload, ctx, result, REDIS, extra_deadline + opts.cap * 0.5)
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
    label = result.labels.get(side, side)
    try:
        server = servers.get(side)
        pids = server.measured_pids() if server is not None else []
        redis_pid = [ctx.redis().measured_pid()] if workload.uses_redis(side) else []
        cpu_before, redis_before, started = _cpu(pids), _cpu(redis_pid), time.monotonic()
        values = workload.run_side(side, server, deadline)
        elapsed = time.monotonic() - started
        if pids:  # the server's own processes, not the programs they run
            values["server_cpu"] = (_cpu(pids) - cpu_before) / elapsed
        if redis_pid:
            values["redis_cpu"] = (_cpu(redis_pid) - redis_before) / elapsed
        result.add(side, values)
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
    side: str,
    deadline: float,
) -> None:
    """One more round of ``side``, untimed, with py-spy sampling the worker."""
    name = workload.name if side == PROCWIRE else f"{workload.name}-{side}"
    workload.side = side
    try:
        server = servers.get(side)
        assert isinstance(server, Procwire)
        with profiler.record(server.measured_pids()[0], name) as summary:  # the first worker of several
            until = time.monotonic() + ctx.opts.profile_seconds
            while True:  # long enough for a useful number of samples
                workload.run_profiled(server, deadline)
                if time.monotonic() >= min(until, deadline):
                    break
        result.profiles[side] = summary
        ctx.log(
            f"   profiled ({result.labels.get(side, side)}): {summary.get('samples', 0)} samples, worker CPU "
            f"{summary.get('cpu_user', 0):.0%} user + {summary.get('cpu_system', 0):.0%} system"
        )
    except Capped:
        raise
    except Exception as error:
        result.notes.append(f"profiling ({side}) failed: {type(error).__name__}: {error}")
        ctx.log(f"   profiling failed: {error}")


def _timeline(workload: Workload, ctx: Context, result: WorkloadResult, side: str, deadline: float) -> None:
    """One more round of ``side``, untimed, on a server whose worker notes when
    each step of an operation ends (bench/timeline.py)."""
    assert workload.timeline_starts_at is not None
    events_file = ctx.work_dir / f"timeline-{workload.name}{'' if side == PROCWIRE else '-' + side}.json"
    events_file.unlink(missing_ok=True)
    env = {**workload.side_env(side), "BENCH_TIMELINE_FILE": str(events_file)}
    workload.side = side
    try:
        server = ctx.procwire(env, config=str(ROOT / "bench" / "timeline_gunicorn.py"))
        try:
            workload.run_timeline(server, deadline)
        finally:
            server.stop()
        recorded = workload.timeline_events(events_file)
        steps, operations = workload.timeline_phases([tuple(event) for event in recorded["events"]])
        result.timelines[side] = {
            "operations": operations,
            "missing": recorded["missing"],
            "phases": [(phase.what, phase.median_us) for phase in steps],
        }
        ctx.log(f"   timeline ({result.labels.get(side, side)}): {operations} operations, {len(steps)} steps")
    except Capped:
        raise
    except Exception as error:
        result.notes.append(f"timeline ({side}) failed: {type(error).__name__}: {error}")
        ctx.log(f"   timeline failed: {error}")
