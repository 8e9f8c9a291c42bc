"""The machine's description, the results table, and docs/benchmarks.md."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.results import PROCWIRE, REDIS, REFERENCE, Summary, WorkloadResult
from bench.servers import ROOT
from bench.workloads.base import BINARY_FAILS_WITH_REDIS

PACKAGES = ["gevent", "greenlet", "gunicorn", "flask-sock", "simple-websocket", "wsproto", "orjson", "websocket-client"]

ANALYSIS = "benchmarks-analysis.md"  # beside docs/benchmarks.md; the suite never writes it


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _command_output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def load_average() -> str:
    return " ".join(_read("/proc/loadavg").split()[:3])


def machine(
    websocketd: str | None, py_spy: str | None, open_files: int, load_at_start: str, exported: str | None
) -> dict[str, str]:
    cpuinfo = _read("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    meminfo = {
        line.split(":")[0]: line.split(":")[1].strip() for line in _read("/proc/meminfo").splitlines() if ":" in line
    }
    memory_kib = int(meminfo.get("MemTotal", "0 kB").split()[0])
    os_name = next(
        (
            line.split("=", 1)[1].strip('"')
            for line in _read("/etc/os-release").splitlines()
            if line.startswith("PRETTY_NAME")
        ),
        platform.system(),
    )
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    dirty = _command_output(["git", "status", "--porcelain", "--", "app", "config", "gunicorn.conf.py", "wsgi.py"])
    commit = _command_output(["git", "rev-parse", "--short", "HEAD"]) or "unknown"
    return {
        "CPU": f"{models[0] if models else platform.processor() or 'unknown'}",
        "cores": f"{os.cpu_count()} logical ({len(models)} in /proc/cpuinfo)",
        "memory": f"{memory_kib / 1024 / 1024:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "OS": os_name,
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": ", ".join(versions),
        "websocketd": (_command_output([websocketd, "--version"]) or websocketd) if websocketd else "not installed",
        "py-spy": _command_output([py_spy, "--version"]) if py_spy else "not installed",
        "open files limit": str(open_files),
        "load average (1/5/15 min)": f"{load_at_start} at the start, {load_average()} at the end",
        "procwire": f"commit {exported[:7]} (exported with git archive)"
        if exported
        else f"working tree at commit {commit}" + (", with uncommitted changes in app/ or config/" if dirty else ""),
    }


def _cell(summary: Summary | None, fmt: Any) -> tuple[str, str]:
    if summary is None:
        return "n/a", "n/a"
    spread = fmt(summary.low) if summary.low == summary.high else f"{fmt(summary.low)}-{fmt(summary.high)}"
    return fmt(summary.median), spread


def table(results: list[WorkloadResult]) -> str:
    lines = [
        "| workload | metric | procwire median | procwire min-max | reference | reference median "
        "| reference min-max | ratio p/r | target | met |",
        "|---|---|--:|--:|---|--:|--:|--:|---|---|",
    ]
    for result in results:
        for metric in result.metrics:
            row = result.row(metric)
            mine, mine_spread = _cell(row["procwire"], metric.fmt)
            theirs, theirs_spread = _cell(row["reference"], metric.fmt) if metric.versus else ("", "")
            unit = f" ({metric.unit})" if metric.unit else ""
            ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else ("n/a" if metric.versus else "")
            target = metric.target.text if metric.target else ""
            lines.append(
                f"| {result.name} | {metric.label}{unit} | {mine} | {mine_spread} | {result.versus_label(metric)} "
                f"| {theirs} | {theirs_spread} | {ratio} | {target} | {_met(row['met'], metric.target)} |"
            )
    return "\n".join(lines)


def _met(met: bool | None, target: object) -> str:
    return {True: "yes", False: "**no**", None: "-" if target else ""}[met]


def redis_table(results: list[WorkloadResult]) -> str:
    """Every workload with and without ``REDIS_URL``: both ratios side by side."""
    lines = [
        "| workload | metric | procwire | procwire, REDIS_URL | reference | reference median | ratio "
        "| ratio, REDIS_URL | Redis/no Redis | target | met |",
        "|---|---|--:|--:|---|--:|--:|--:|--:|---|---|",
    ]
    for result in results:
        rounds, plain_rounds = len(result.runs.get(REDIS, [])), len(result.runs.get(PROCWIRE, []))
        fewer = f" ({rounds} r.)" if rounds < plain_rounds else ""
        for row in result.redis_rows():
            metric = row["metric"]
            plain, redis = row["plain"], row["redis"]
            unit = f" ({metric.unit})" if metric.unit else ""
            mine = _cell(plain["procwire"], metric.fmt)[0]
            with_redis = _cell(redis["procwire"], metric.fmt)[0] + fewer
            theirs = _cell(plain["reference"], metric.fmt)[0]
            ratios = [f"{r['ratio']:.2f}x" if r["ratio"] is not None else "n/a" for r in (plain, redis)]
            change = f"{row['change']:.2f}x" if row["change"] is not None else "n/a"
            target = row["target"].text if row["target"] else ""
            lines.append(
                f"| {result.name} | {metric.label}{unit} | {mine} | {with_redis} | {result.versus_label(metric)} "
                f"| {theirs} | {ratios[0]} | {ratios[1]} | {change} | {target} | {_met(row['met'], row['target'])} |"
            )
    return "\n".join(lines)


def _heading(result: WorkloadResult, side: str) -> str:
    return f"### {result.name}" if side == PROCWIRE else f"### {result.name}, {result.labels.get(side, side)}"


def _profile_section(result: WorkloadResult) -> list[str]:
    lines: list[str] = []
    for side, profile in result.profiles.items():
        lines += _one_profile(_heading(result, side), profile)
    return lines


def _one_profile(heading: str, profile: dict[str, Any]) -> list[str]:
    if "error" in profile:
        return [heading, "", f"py-spy failed: `{profile['error'].strip()}`", ""]
    busy = profile["samples"] - profile["idle_samples"]
    lines = [
        heading,
        "",
        f"{profile['seconds']} s of an extra, untimed procwire round: the worker used "
        f"{profile['cpu_user']:.0%} user + {profile['cpu_system']:.0%} system CPU of one core; "
        f"{busy} busy samples ({profile['idle_samples']} idle in epoll_wait not counted); "
        f"raw stacks in `{Path(profile['file']).relative_to(ROOT)}`.",
        "",
        "| share | innermost frame (C with --native) | share | innermost Python frame |",
        "|--:|---|--:|---|",
    ]
    rows = max(len(profile["own"]), len(profile["own_python"]))
    for index in range(rows):
        left = profile["own"][index] if index < len(profile["own"]) else ("", None)
        right = profile["own_python"][index] if index < len(profile["own_python"]) else ("", None)
        lines.append(f"| {_share(left[1])} | {_code(left[0])} | {_share(right[1])} | {_code(right[0])} |")
    app = [(name, share) for name, share in profile["inclusive"] if "(app/" in name][:12]
    if app:
        lines += ["", "| inclusive | procwire function |", "|--:|---|"]
        lines += [f"| {share:.1%} | `{name}` |" for name, share in app]
    return [*lines, ""]


def _timeline_section(result: WorkloadResult) -> list[str]:
    lines: list[str] = []
    reference = Summary.of(result.values(REFERENCE, "rate"))
    for side, recorded in result.timelines.items():
        if not recorded or not recorded["phases"]:
            continue
        total = sum(median for _, median in recorded["phases"])
        lines += [
            _heading(result, side),
            "",
            f"One more procwire round with probes in the worker (bench/timeline.py); medians over "
            f"{recorded['operations']} operations, in the order they happen; their sum is {total:,.0f} µs per "
            "operation"
            + (f", against {1e6 / reference.median:,.0f} µs for the reference." if reference else ".")
            + (f" Not probed in this tree: {', '.join(recorded['missing'])}." if recorded["missing"] else ""),
            "",
            "| step | median µs |",
            "|---|--:|",
            *[f"| {what} | {median:,.1f} |" for what, median in recorded["phases"]],
            "",
        ]
    return lines


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _code(name: str) -> str:
    return f"`{name}`" if name else ""


def _cpu_line(result: WorkloadResult) -> str:
    """The servers' own CPU use during the rounds (their children, the programs, not counted)."""
    parts = []
    for side, label in result.labels.items():
        summary = Summary.of(result.values(side, "server_cpu"))
        if summary is not None:
            parts.append(f"{'procwire worker' if side == PROCWIRE else label} {summary.median:.0%}")
        redis = Summary.of(result.values(side, "redis_cpu"))
        if redis is not None:
            parts.append(f"redis-server (for {label}) {redis.median:.0%}")
    return "server CPU during the rounds, median share of one core: " + ", ".join(parts) if parts else ""


def _raw_section(result: WorkloadResult) -> list[str]:
    lines = [f"- **{result.name}** ({result.seconds:.0f} s)"]
    for side, label in result.labels.items():
        if side in result.skipped:
            continue
        rounds = result.runs.get(side, [])
        text = "; ".join(", ".join(f"{key} {value:.4g}" for key, value in values.items()) for values in rounds)
        lines.append(f"  - {label}: {text or 'no round completed'}")
    return lines


def _compared(result: WorkloadResult) -> str:
    others = [label for side, label in result.labels.items() if side != PROCWIRE]
    return "compared with: " + "; ".join(others) if others else "no reference"


def document(
    results: list[WorkloadResult],
    machine_info: dict[str, str],
    command: str,
    mode: str,
    started: datetime.datetime,
    output_mode: str,
) -> str:
    date = started.strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        f"Measured {date} by `{command}` ({mode} run), written by the suite in `bench/`. "
        "Each workload runs against procwire (gunicorn, one gevent worker, as `gunicorn.conf.py` sets it up) "
        "and against the reference in the same run, alternating which goes first, for several rounds; "
        "the table gives the median of the rounds, their spread (min-max) and the ratio of the medians "
        "procwire/reference. Rates and throughputs: higher is better; latencies and memory: lower is better. "
        "Both servers run on free loopback ports; one Python client (websocket-client, UTF-8 validation off) "
        "talks to both. Compression is off on both sides. The cluster rows (xecho, xstream, parallel) "
        "compare configurations of procwire with each other: see each workload's description.",
        "",
        f"Analysis of these figures, written by hand and kept across runs: [{ANALYSIS}]({ANALYSIS}).",
        "",
        "## Machine",
        "",
        *[f"- {key}: {value}" for key, value in machine_info.items()],
        "",
        "## Results",
        "",
        table(results),
        "",
        f"procwire output mode for streamed bytes: `{output_mode}`.",
        "",
    ]
    if any(result.redis_rows() for result in results):
        lines += [
            "## With REDIS_URL set (cluster mode, one worker)",
            "",
            "The same workloads in the same run against a third server: procwire as above with "
            "`PROCWIRE_REDIS_URL` naming a `redis-server` the suite started on loopback (no persistence, "
            "emptied before each workload), its rounds interleaved with the others. Target (issue 10): each "
            "ratio within 10 % of the ratio without Redis (spawn: 20 %), i.e. the Redis/no Redis column "
            "≥ 0.9x for rates and throughputs, ≤ 1.1x for latencies and memory; checks keep their own "
            "target. `(n r.)`: rounds run with Redis, when fewer than without.",
            "",
            redis_table(results),
            "",
        ]
        if any(BINARY_FAILS_WITH_REDIS in result.notes for result in results):
            lines += [
                "Binary output frames failed with REDIS_URL set in this run (the probe at the start saw the "
                "exit of `echo` but none of its output): the binary rows have no figure with Redis and count as "
                "not met, and the workloads that stream binary output without Redis (fanout, slow, compression) "
                "streamed base64 output notifications with it, so their Redis/no Redis column compares base64 "
                "with binary output. stream's base64 row compares like with like.",
                "",
            ]
    lines += [
        "## Workloads",
        "",
    ]
    for result in results:
        lines.append(f"- **{result.name}**: {result.description}; {_compared(result)}.")
        lines += [f"  - {note}" for note in result.notes]
        cpu = _cpu_line(result)
        if cpu:
            lines.append(f"  - {cpu}")
    profiled = [line for result in results for line in _profile_section(result)]
    if profiled:
        lines += ["", "## Where procwire's time goes (py-spy)", "", *profiled]
    timed = [line for result in results for line in _timeline_section(result)]
    if timed:
        lines += ["", "## One operation, step by step (latency-bound: spawn, cycle, xecho)", "", *timed]
    lines += ["", "## Every round", ""]
    for result in results:
        lines += _raw_section(result)
    lines += [
        "",
        "## Reproduce",
        "",
        "    make bench                      # installs the bench extra (and websocketd when root), full run",
        "    .venv/bin/python -m bench --quick",
        "    .venv/bin/python -m bench --procwire-rev HEAD   # the committed server, not the working tree",
        "    .venv/bin/python -m bench --only xecho,xstream,parallel   # the cluster rows alone",
        "    .venv/bin/python -m bench --help",
        "",
    ]
    return "\n".join(lines)
