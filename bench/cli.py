"""``python -m bench``: run the workloads against procwire and websocketd, print and write the table."""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from bench import report
from bench.client import OUTPUT_MODES, binary_output_works, supports_binary
from bench.procs import Supervisor, install_signal_handlers, raise_open_files_limit
from bench.profiling import Profiler, find_py_spy
from bench.runner import run_workload
from bench.servers import REDIS_INSTALL_HINT, ROOT, WEBSOCKETD_INSTALL_HINT, Procwire, Redis, Websocketd
from bench.workloads import CLUSTER, GROUPS, WORKLOADS, Context

MIB = 1 << 20
FULL = {
    "rounds": 5,
    "cap": 300.0,
    "spawn_count": 2000,
    "cycle_count": 500,
    "echo_count": 5000,
    "stream_bytes": 1 << 30,
    "idle_conns": 10_000,
    "idle_hold": 30.0,
    "idle_rounds": 2,
    "fanout_procs": 300,  # issue 11's operator test: 300 streams, a client that keeps up, an echo every 5 ms
    "fanout_bytes": 16_000_000,  # about 900 echoes a round; with 5 rounds procwire's p99 median held within 5 %
    "fanout_rounds": 5,  # over three runs (websocketd's did not: 34-88 ms, its p99 is the machine's scheduler)
    "slow_bytes": 1 << 30,
    "slow_pause": 10.0,
    "slow_pause_after": 64 * MIB,
    "slow_rounds": 2,
    "profile_seconds": 10.0,
    "compress_bytes": 256 * MIB,
    "redis_rounds": 3,  # of the fast workloads' 5; idle, fanout and slow: 1
    "xstream_bytes": 1 << 30,
    "xstream_rounds": 3,
    "parallel_seconds": 5.0,
    "parallel_rounds": 3,
}
QUICK = {
    "rounds": 3,
    "cap": 60.0,
    "spawn_count": 300,
    "cycle_count": 100,
    "echo_count": 1000,
    "stream_bytes": 64 * MIB,
    "idle_conns": 1000,
    "idle_hold": 3.0,
    "idle_rounds": 1,
    "fanout_procs": 100,
    "fanout_bytes": 5_000_000,
    "fanout_rounds": 1,
    "slow_bytes": 128 * MIB,
    "slow_pause": 3.0,
    "slow_pause_after": 16 * MIB,
    "slow_rounds": 1,
    "profile_seconds": 3.0,
    "compress_bytes": 32 * MIB,
    "redis_rounds": None,  # as many as without Redis; idle, fanout and slow: 1
    "xstream_bytes": 64 * MIB,
    "xstream_rounds": 1,
    "parallel_seconds": 2.0,
    "parallel_rounds": 1,
}


def _size(text: str) -> int:
    """``1073741824``, ``1GiB``, ``64MiB``, ``10MB``, ``512k``..."""
    units = {"k": 1000, "kb": 1000, "kib": 1024, "m": 10**6, "mb": 10**6, "mib": MIB, "g": 10**9, "gb": 10**9}
    units["gib"] = 1 << 30
    lowered = text.strip().lower().replace("_", "")
    for suffix in sorted(units, key=len, reverse=True):
        if lowered.endswith(suffix):
            return int(float(lowered.removesuffix(suffix)) * units[suffix])
    return int(lowered)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="procwire side by side with websocketd (issue 3). Sizes accept suffixes: 10MB, 64MiB, 1GiB.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes, fewer rounds: finishes in about 2 minutes")
    p.add_argument(
        "--only",
        help=f"comma-separated workloads to run, of: {', '.join(WORKLOADS)}; or a group: {', '.join(GROUPS)}",
    )
    p.add_argument("--skip", help="comma-separated workloads to leave out")
    p.add_argument("--rounds", type=int, help="rounds of the fast workloads (spawn, cycle, echo, stream)")
    p.add_argument("--cap", type=float, help="time cap of each workload in seconds (it stops by itself)")
    p.add_argument("--timeout", type=float, default=30.0, help="socket timeout of every client operation")
    p.add_argument("--no-reference", action="store_true", help="run procwire only")
    p.add_argument(
        "--procwire-rev",
        help="run procwire as committed at this revision (exported with git archive), not the working tree",
    )
    p.add_argument(
        "--stream-mode",
        choices=["auto", *OUTPUT_MODES],
        default="auto",
        help="how procwire sends streamed bytes: binary frames when the server accepts `binary: true` (auto)",
    )
    p.add_argument("--spawn-count", type=int, help="starts per spawn round")
    p.add_argument("--cycle-count", type=int, help="connections per cycle round")
    p.add_argument("--echo-count", type=int, help="round trips per echo round")
    p.add_argument("--echo-line", default="hello", help="the line echoed through cat")
    p.add_argument("--stream-bytes", type=_size, help="bytes per stream round (default 1GiB)")
    p.add_argument("--idle-conns", type=int, help="idle connections (default 10000)")
    p.add_argument("--idle-hold", type=float, help="seconds the idle connections are held")
    p.add_argument("--idle-rounds", type=int)
    p.add_argument("--fanout-procs", type=int, help="streaming processes (default 300)")
    p.add_argument("--fanout-bytes", type=_size, help="bytes each of them streams (default 16MB)")
    p.add_argument("--fanout-echo-interval", type=float, default=0.005, help="seconds between probe echoes")
    p.add_argument("--fanout-rounds", type=int)
    p.add_argument("--fanout-clients", type=int, default=2, help="load-client processes reading the streams")
    p.add_argument(
        "--fanout-probe-nice",
        type=int,
        default=-10,
        help="priority change of the echo probe, so that its p99 measures the server, not the client's scheduling",
    )
    p.add_argument("--slow-bytes", type=_size, help="bytes of the slow-reader stream (default 1GiB)")
    p.add_argument("--slow-pause", type=float, help="seconds the reader stops reading (default 10)")
    p.add_argument("--slow-pause-after", type=_size, help="bytes read before the pause")
    p.add_argument("--slow-rounds", type=int)
    p.add_argument("--compress-bytes", type=_size, help="bytes streamed with and without compression")
    p.add_argument("--no-redis", action="store_true", help="leave out the runs with REDIS_URL set and the cluster rows")
    p.add_argument(
        "--redis-rounds",
        type=int,
        help="rounds with REDIS_URL set, at most the workload's (full run: 3; idle, fanout and slow: 1)",
    )
    p.add_argument("--xstream-bytes", type=_size, help="bytes of each cross-worker stream (default 1GiB)")
    p.add_argument(
        "--xstream-buffer",
        type=_size,
        default=16 * MIB,
        help="the producer's `buffer` (its history window, the length of its Redis stream; server max 16 MiB)",
    )
    p.add_argument("--xstream-rounds", type=int)
    p.add_argument("--parallel-clients", type=int, default=16, help="connections at once in the parallel rows")
    p.add_argument("--parallel-processes", type=int, default=2, help="client processes they are spread over")
    p.add_argument("--parallel-seconds", type=float, help="length of each parallel phase")
    p.add_argument("--parallel-rounds", type=int)
    p.add_argument("--parallel-no-workers2", action="store_true", help="skip WORKERS=2 without Redis")
    p.add_argument("--no-profile", action="store_true", help="skip the py-spy pass of spawn, echo and stream")
    p.add_argument("--no-timeline", action="store_true", help="skip the phase-by-phase pass of spawn and cycle")
    p.add_argument("--profile-rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--profile-python-only", action="store_true", help="py-spy without --native (non-blocking)")
    p.add_argument("--profile-seconds", type=float, help="at least this long a py-spy pass (repeating the round)")
    p.add_argument(
        "--output",
        type=Path,
        help="where to write the table (default docs/benchmarks.md, written only when every workload ran)",
    )
    p.add_argument("--no-write", action="store_true", help="print only")
    return p


def _names(text: str) -> list[str]:
    """Comma-separated workload names, a group's name (``programs``) standing for its workloads."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    return [member for name in names for member in GROUPS.get(name, (name,))]


def parse(argv: list[str] | None) -> argparse.Namespace:
    opts = parser().parse_args(argv)
    opts.redis_rounds_given = opts.redis_rounds is not None
    preset = QUICK if opts.quick else FULL
    for key, value in preset.items():
        if getattr(opts, key) is None:
            setattr(opts, key, value)
    chosen = list(WORKLOADS)
    if opts.only:
        chosen = _names(opts.only)
    if opts.skip:
        skipped = set(_names(opts.skip))
        chosen = [name for name in chosen if name not in skipped]
    if opts.no_redis:
        chosen = [name for name in chosen if name not in CLUSTER]
    unknown = [name for name in chosen if name not in WORKLOADS]
    if unknown:
        parser().error(f"unknown workload(s): {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
    opts.workloads = chosen
    if opts.output is None and not opts.no_write and chosen == list(WORKLOADS):
        opts.output = ROOT / "docs" / "benchmarks.md"
    return opts


def export(rev: str, work_dir: Path) -> tuple[Path, str]:
    """``rev``'s tree in a fresh directory (the working tree and .git stay untouched)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    target = work_dir / f"procwire-{commit[:12]}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target, commit


def server_has_binary(opts: argparse.Namespace, supervisor: Supervisor, work_dir: Path, root: Path) -> bool:
    """Does this procwire accept ``"binary": true`` (binary output and stdin frames)?"""
    server = Procwire(supervisor, work_dir, root=root).start()
    try:
        return supports_binary(server.url, server.headers, opts.timeout)
    finally:
        server.stop()


def machine_info(ctx: Context, *args: object) -> dict[str, str]:
    info = report.machine(*args)  # type: ignore[arg-type]
    if ctx.redis_server is not None:
        executable = Redis.available() or "redis-server"
        version = subprocess.run([executable, "--version"], capture_output=True, text=True).stdout.strip()
        binary = "work" if ctx.redis_binary else "fail (base64 output there instead)"
        info["Redis"] = f"{version}, no persistence, on loopback; binary output frames with REDIS_URL set: {binary}"
    return info


def redis_has_binary(ctx: Context) -> bool:
    """Do binary output frames work with REDIS_URL set?"""
    server = ctx.procwire(ctx.redis_env())
    try:
        return binary_output_works(server.url, server.headers, ctx.timeout)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    install_signal_handlers()
    open_files = raise_open_files_limit()
    started = datetime.datetime.now(datetime.UTC)
    load_at_start = report.load_average()
    work_dir = ROOT / "build" / "bench"
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "errors.log").unlink(missing_ok=True)
    supervisor = Supervisor()
    websocketd = None if opts.no_reference else Websocketd.available()
    if websocketd is None and not opts.no_reference:
        print(f"NOTE: {WEBSOCKETD_INSTALL_HINT}; running without the websocketd column", file=sys.stderr)
    if not opts.no_redis and Redis.available() is None:
        print(f"NOTE: {REDIS_INSTALL_HINT}; running without the REDIS_URL rows", file=sys.stderr)
        opts.workloads = [name for name in opts.workloads if name not in CLUSTER]
    py_spy = find_py_spy()
    profiler = None
    if not opts.no_profile:
        if py_spy is None:
            print("NOTE: py-spy not found (pip install py-spy); no profiles", file=sys.stderr)
        else:
            profiler = Profiler(
                py_spy, supervisor, work_dir / "profiles", opts.profile_rate, native=not opts.profile_python_only
            )
    ctx: Context | None = None
    try:
        procwire_root, commit = export(opts.procwire_rev, work_dir) if opts.procwire_rev else (ROOT, None)
        binary = server_has_binary(opts, supervisor, work_dir, procwire_root)
        ctx = Context(opts, supervisor, work_dir, websocketd, binary, open_files, procwire_root)
        if binary and ctx.with_redis:
            ctx.redis_binary = redis_has_binary(ctx)
            if not ctx.redis_binary:
                print("NOTE: with REDIS_URL set, binary output frames fail: base64 there instead", file=sys.stderr)
        output_mode = ctx.output_mode
        print(f"procwire output mode: {output_mode.name}; open-files limit {open_files}", flush=True)
        results = [run_workload(WORKLOADS[name](ctx), ctx, profiler) for name in opts.workloads]
        print()
        print(report.table(results))
        if any(result.redis_rows() for result in results):
            print()
            print(report.redis_table(results))
        command = "python -m bench" + (" " + shlex.join(argv if argv is not None else sys.argv[1:])).rstrip()
        document = report.document(
            results,
            machine_info(ctx, websocketd, py_spy, open_files, load_at_start, commit),
            command.strip(),
            "quick" if opts.quick else "full",
            started,
            output_mode.name,
        )
        (work_dir / "results.json").write_text(json.dumps([result.to_json() for result in results], indent=1))
        (work_dir / "benchmarks.md").write_text(document)
        if opts.output is not None and not opts.no_write:
            opts.output.parent.mkdir(parents=True, exist_ok=True)
            opts.output.write_text(document)
            print(f"\nwritten to {opts.output}")
        else:
            print(f"\nwritten to {work_dir / 'benchmarks.md'}")
        return 0
    except KeyboardInterrupt as interrupt:
        print(f"\ninterrupted ({interrupt or 'SIGINT'}): stopping every process the suite started", file=sys.stderr)
        return 130
    finally:
        if ctx is not None and ctx.redis_server is not None:
            ctx.redis_server.stop()  # its own stop: its directory goes too
        supervisor.stop_all()
