"""Job control from the command line: ``run -d``, ``logs``, ``wait``, ``stop``, ``release``, ``ps`` and its filters."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

import procwire_client as pw
from tests.server import Server
from tests.test_cli_support import (
    BOUND,
    COMMAND,
    Terminal,
    cli_env,
    one_line,
    opened_terminals,
    procwire,
    procwire_line,
)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    yield from opened_terminals()


@pytest.fixture
def detached(server: Server, lib: pw.Client) -> Iterator[Any]:
    """``run -d`` as a function; every process it started is killed and released after the test."""
    started: list[int] = []

    def start(*args: str) -> int:
        done = procwire(server, "run", "-d", *args)
        assert done.returncode == 0, done.stderr
        assert re.fullmatch(rb"\d+\n", done.stdout), done.stdout
        started.append(int(done.stdout))
        return started[-1]

    yield start
    for proc in started:
        with contextlib.suppress(pw.ProcwireError):
            lib.kill(proc)
        with contextlib.suppress(pw.ProcwireError):
            lib.wait(proc, timeout=BOUND)
            lib.release(proc)


def ps_json(server: Server, *args: str) -> list[dict[str, Any]]:
    done = procwire(server, "ps", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_run_detach_then_logs_wait_and_release(server: Server, detached: Any) -> None:
    proc = detached("--name", "job", "--", "sh", "-c", "echo out; echo err >&2; sleep 1; echo late; exit 3")
    info = next(item for item in ps_json(server) if item["proc"] == proc)
    assert info["on_disconnect"] == "keep" and info["name"] == "job"  # it outlived the command that started it
    waited = procwire(server, "wait", str(proc))
    assert (waited.returncode, waited.stdout, waited.stderr) == (3, b"", b"")
    logs = procwire(server, "logs", str(proc))
    assert (logs.returncode, logs.stdout, logs.stderr) == (0, b"out\nlate\n", b"err\n")
    since = procwire(server, "logs", str(proc), "--since", "2,4")
    assert (since.stdout, since.stderr) == (b"t\nlate\n", b"")
    assert procwire(server, "release", str(proc)).returncode == 0
    gone = procwire(server, "wait", str(proc))
    assert gone.returncode == 1 and "no such process" in one_line(gone.stderr)


def test_logs_stops_at_the_current_end_and_follows_with_f(server: Server, detached: Any) -> None:
    proc = detached("--", "sh", "-c", "echo first; sleep 3; echo second")
    deadline = time.monotonic() + BOUND
    while (logs := procwire(server, "logs", str(proc))).stdout != b"first\n":  # the history so far, without waiting
        assert logs.returncode == 0 and time.monotonic() < deadline, logs
        time.sleep(0.1)
    with subprocess.Popen(
        [*COMMAND, "logs", "-f", str(proc)], env=cli_env(server), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    ) as following:
        assert following.stdout is not None
        try:
            assert following.stdout.readline() == b"first\n"
            assert procwire(server, "ps", "--running", "--json").stdout.count(b'"proc": %d,' % proc) == 1
            assert following.stdout.readline() == b"second\n"  # live output, after the history
            assert following.wait(BOUND) == 0  # the process exited: -f ends
        finally:
            if following.poll() is None:
                following.kill()


def test_stop_sends_term_then_kill(server: Server, detached: Any) -> None:
    proc = detached("--", "sh", "-c", "trap '' TERM; sleep 30")
    started = time.monotonic()
    done = procwire(server, "stop", str(proc), "--grace", "0.5")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < BOUND / 2
    assert procwire(server, "wait", str(proc)).returncode == 137  # TERM ignored: KILL after the grace


def test_ps_filters_and_shows_the_command_as_typed(server: Server, detached: Any) -> None:
    first = detached("--name", "build-1", "--", "sh", "-c", "sleep 30")
    second = detached("--name", "test-1", "--", "sleep", "31")
    ended = detached("--name", "build-2", "--", "true")
    assert procwire(server, "wait", str(ended)).returncode == 0
    assert {item["proc"] for item in ps_json(server, "--name", "build-*")} >= {first, ended}
    assert second not in {item["proc"] for item in ps_json(server, "--name", "build-*")}
    running = {item["proc"] for item in ps_json(server, "--running")}
    assert {first, second} <= running and ended not in running
    assert {item["proc"] for item in ps_json(server, "--owner", "default")} >= {first, second}
    assert ps_json(server, "--owner", "nobody") == []

    table = procwire(server, "ps", "--running").stdout.decode()
    assert re.search(r"^PROC\s+PID\s+STATE\s+EXIT\s+STARTED\s+FLAGS\s+NODE\s+OWNER\s+NAME\s+COMMAND$", table, re.M)
    line = next(line for line in table.splitlines() if line.split()[0] == str(first))
    assert line.endswith("build-1  sh -c 'sleep 30'"), line


def test_ps_shows_a_shell_as_shell(server: Server, lib: pw.Client, terminals: list[Terminal]) -> None:
    """``ps`` showed a shell as ``/bin/sh -c 'exec "${SHELL:-/bin/sh}"'``."""
    terminal = Terminal(f'{procwire_line("shell", "--keep", "--name", "mine")}; echo "rc=$?"', cli_env(server))
    terminals.append(terminal)
    terminal.read_until(r"session (\d+): ~\. detaches")
    proc = int(re.search(rb"session (\d+)", terminal.output).group(1))  # type: ignore[union-attr]
    try:
        line = next(line for line in procwire(server, "ps").stdout.decode().splitlines() if line.startswith(f"{proc} "))
        assert line.endswith("mine  shell"), line
        assert "SHELL" not in line
    finally:
        with contextlib.suppress(pw.ProcwireError):
            lib.kill(proc)
