"""The ``procwire`` command line, run as a real subprocess against the real server: run, ps, kill, attach."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import procwire_client as pw
from tests.server import Server
from tests.test_cli_support import BOUND, COMMAND, cli_env, one_line, procwire


def test_run_prints_both_streams_and_exits_with_the_code(server: Server) -> None:
    done = procwire(server, "run", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, b"out\n", b"err\n")


def test_installed_script(server: Server) -> None:
    script = Path(sys.executable).parent / "procwire"
    assert script.exists(), "make install installs the procwire script (procwire-client's)"
    done = subprocess.run(
        [str(script), "run", "--", "sh", "-c", "echo via script; exit 2"],
        env=cli_env(server),
        capture_output=True,
        timeout=BOUND,
    )
    assert (done.returncode, done.stdout) == (2, b"via script\n")


def test_run_streams_output_as_it_is_written(server: Server) -> None:
    started = time.monotonic()
    with subprocess.Popen(
        [*COMMAND, "run", "--", "sh", "-c", "echo first; sleep 3; echo second"],
        env=cli_env(server),
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    ) as running:
        assert running.stdout is not None
        ready, _, _ = select.select([running.stdout], [], [], BOUND)
        assert ready
        assert running.stdout.readline() == b"first\n"
        assert time.monotonic() - started < 2.5  # before the command ended
        assert running.stdout.read() == b"second\n"
        assert running.wait(BOUND) == 0


def test_stdin_is_forwarded(server: Server) -> None:
    done = procwire(server, "run", "--", "cat", input=b"hello\n")
    assert (done.returncode, done.stdout) == (0, b"hello\n")


def test_large_binary_stdin_and_stdout(server: Server) -> None:
    data = os.urandom(3 << 20)
    done = procwire(server, "run", "--", "cat", input=data)
    assert done.returncode == 0
    assert done.stdout == data


def test_terminal_stdin_with_nothing_typed_does_not_block(server: Server) -> None:
    controller, terminal = os.openpty()
    try:
        done = procwire(server, "run", "--", "echo", "hi", stdin=terminal)
    finally:
        os.close(controller)
        os.close(terminal)
    assert (done.returncode, done.stdout) == (0, b"hi\n")


def test_no_stdin_option(server: Server) -> None:
    done = procwire(server, "run", "-n", "--", "sh", "-c", "cat; echo end", input=b"ignored\n")
    assert (done.returncode, done.stdout) == (0, b"end\n")


def test_run_options(server: Server, tmp_path: Path) -> None:
    done = procwire(
        server,
        "run",
        "--cwd",
        str(tmp_path),
        "-e",
        "GREETING=hi there",
        "--name",
        "opts",
        "--",
        "sh",
        "-c",
        'echo "$GREETING" "$(pwd)"',
    )
    assert (done.returncode, done.stdout) == (0, f"hi there {tmp_path}\n".encode())
    timed = procwire(server, "run", "--timeout", "0.3", "--", "sleep", "10")
    assert timed.returncode == 124  # as timeout(1)


@pytest.mark.parametrize(("sig", "code"), [("KILL", 137), ("TERM", 143), ("USR1", 138)])
def test_death_by_signal_is_128_plus_n(server: Server, sig: str, code: int) -> None:
    done = procwire(server, "run", "--", "sh", "-c", f"kill -{sig} $$")
    assert done.returncode == code


def test_ctrl_c_is_forwarded_to_the_remote_command(server: Server) -> None:
    script = "trap 'echo got INT; exit 7' INT; echo ready; while :; do sleep 0.1; done"
    with subprocess.Popen(
        [*COMMAND, "run", "--", "sh", "-c", script],
        env=cli_env(server),
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    ) as running:
        assert running.stdout is not None
        try:
            assert select.select([running.stdout], [], [], BOUND)[0]
            assert running.stdout.readline() == b"ready\n"
            running.send_signal(signal.SIGINT)
            assert running.wait(BOUND) == 7
            assert running.stdout.read() == b"got INT\n"
        finally:
            if running.poll() is None:
                running.kill()


def test_command_not_found(server: Server) -> None:
    done = procwire(server, "run", "--", "no-such-program")
    assert done.returncode == 127
    assert "no-such-program" in one_line(done.stderr)


def test_not_executable(server: Server) -> None:
    done = procwire(server, "run", "--", "/etc/passwd")
    assert done.returncode == 126
    assert "permission denied" in one_line(done.stderr)


def test_bad_token_is_one_line_and_non_zero(server: Server) -> None:
    done = procwire(server, "run", "--", "true", env=cli_env(server, PROCWIRE_TOKEN="wrong"))
    assert done.returncode == 1
    assert "HTTP 401" in one_line(done.stderr)
    assert done.stdout == b""


def test_flags_override_the_environment(server: Server) -> None:
    env = cli_env(server, PROCWIRE_TOKEN="wrong", PROCWIRE_URL="ws://127.0.0.1:1/ws")
    done = procwire(server, "run", "--url", server.url, "--token", server.token, "--", "echo", "ok", env=env)
    assert (done.returncode, done.stdout) == (0, b"ok\n")
    before = procwire(server, "--url", server.url, "--token", server.token, "run", "--", "echo", "ok", env=env)
    assert (before.returncode, before.stdout) == (0, b"ok\n")


def test_no_server_is_one_line(server: Server) -> None:
    done = procwire(server, "run", "--", "true", env=cli_env(server, PROCWIRE_URL="ws://127.0.0.1:1/ws"))
    assert done.returncode == 1
    assert "cannot connect" in one_line(done.stderr)


def test_usage_errors_exit_2(server: Server) -> None:
    env = {key: value for key, value in cli_env(server).items() if key != "PROCWIRE_TOKEN"}
    assert "no token" in one_line(procwire(server, "ps", env=env).stderr)
    assert procwire(server, "ps", env=env).returncode == 2
    no_command = procwire(server, "run")
    assert no_command.returncode == 2
    assert "no command" in one_line(no_command.stderr)
    assert procwire(server, "frobnicate").returncode == 2
    assert procwire(server).returncode == 2


# -- ps, kill, clients ------------------------------------------------------------------------------


def test_ps_and_kill(server: Server, lib: pw.Client) -> None:
    first = lib.start(["sleep", "30"], name="cli-ps")
    second = lib.start(["sleep", "31"])
    try:
        listed = procwire(server, "ps")
        assert listed.returncode == 0
        line = next(line for line in listed.stdout.decode().splitlines() if line.split()[0] == str(first.proc))
        assert "running" in line and "cli-ps" in line and "sleep 30" in line
        as_json = json.loads(procwire(server, "ps", "--json").stdout)
        assert {item["proc"] for item in as_json} >= {first.proc, second.proc}

        assert procwire(server, "kill", str(first.proc)).returncode == 0
        assert first.wait(BOUND).signal == "SIGTERM"
        assert procwire(server, "kill", str(second.proc), "--signal", "9").returncode == 0
        assert second.wait(BOUND).signal == "SIGKILL"
        exited = procwire(server, "ps").stdout.decode()
        assert re.search(rf"^{first.proc}\s+\d+\s+exited\s+SIGTERM", exited, re.MULTILINE)
    finally:
        for process in (first, second):
            with contextlib.suppress(pw.ProcessExited):
                process.kill()


def test_kill_unknown_process(server: Server) -> None:
    done = procwire(server, "kill", "999999")
    assert done.returncode == 1
    assert "no such process" in one_line(done.stderr)


def test_clients(server: Server, lib: pw.Client) -> None:
    process = lib.start(["sleep", "30"])
    with process:
        listed = procwire(server, "clients")
        assert listed.returncode == 0
        line = next(line for line in listed.stdout.decode().splitlines() if line.startswith(lib.client_id or "?"))
        assert "127.0.0.1" in line and str(process.proc) in line
        as_json = json.loads(procwire(server, "clients", "--json").stdout)
        assert lib.client_id in {client["id"] for client in as_json}
    refused = procwire(server, "clients", env=cli_env(server, PROCWIRE_TOKEN="wrong"))
    assert refused.returncode == 1
    assert "HTTP 401" in one_line(refused.stderr)


# -- attach ------------------------------------------------------------------------------------------


def test_attach_replays_then_follows_to_the_exit(server: Server) -> None:
    with pw.Client(server.url, server.token) as starter:
        kept = starter.start(["sh", "-c", "echo one; sleep 1; echo two >&2; exit 4"], on_disconnect="keep")
        assert kept.iter_output(BOUND).__next__() == ("stdout", b"one\n")
    listed = procwire(server, "ps").stdout.decode()
    assert re.search(rf"^{kept.proc}\s.*\skeep,attached=0\s", listed, re.MULTILINE), listed
    done = procwire(server, "attach", str(kept.proc))
    assert (done.returncode, done.stdout, done.stderr) == (4, b"one\n", b"two\n")
    again = procwire(server, "attach", str(kept.proc), "--offset", "2")
    assert (again.returncode, again.stdout) == (4, b"e\n")


# -- shell through a real terminal ------------------------------------------------------------------


def test_a_closed_pipe_ends_attach_quietly_with_141(server: Server) -> None:
    """``procwire attach 7 | head -c 10``: exit 141, like any filter whose reader left, and no traceback."""
    with pw.Client(server.url, server.token) as starter:
        kept = starter.start(["sh", "-c", "seq 1 3000000; sleep 30"], on_disconnect="keep")
    script = f"{shlex.join([*COMMAND, 'attach', str(kept.proc)])} | head -c 10 >/dev/null; echo ${{PIPESTATUS[0]}} >&2"
    try:
        piped = subprocess.run(["bash", "-c", script], env=cli_env(server), capture_output=True, timeout=BOUND)
    finally:
        with pw.Client(server.url, server.token) as cleaner:
            cleaner.attach(kept.proc).kill()
    assert piped.stderr.decode().split() == ["141"], piped.stderr.decode()


def test_a_timeout_exits_124_and_says_so(server: Server) -> None:
    """``--timeout 1`` ends like ``timeout(1)``: 124 and a line on stderr (it was 143, silently)."""
    done = procwire(server, "run", "--timeout", "1", "--", "sleep", "30")
    assert done.returncode == 124
    assert "timed out" in one_line(done.stderr)


def test_a_working_directory_that_is_not_usable_exits_125(server: Server) -> None:
    """Not 126 (the "cannot execute" code): 125, as ``env -C`` does, with the reason."""
    done = procwire(server, "run", "--cwd", "/nonexistent/procwire", "--", "true")
    assert done.returncode == 125
    assert "/nonexistent/procwire" in one_line(done.stderr)


def test_bare_procwire_lists_the_commands(server: Server) -> None:
    bare = procwire(server)
    assert bare.returncode == 2
    listed = bare.stderr.decode()
    for command in ("run", "shell", "ps", "attach", "kill"):
        assert re.search(rf"^\s+{command}\s+\S", listed, re.MULTILINE), listed


def test_a_pasted_http_url_with_its_token_is_enough(server: Server) -> None:
    """``http://host:port/?token=...`` (what a browser shows) works as PROCWIRE_URL alone: ws, /ws and the token."""
    port = server.url.split(":")[2].split("/")[0]
    env = cli_env(server, PROCWIRE_URL=f"http://127.0.0.1:{port}/?token={server.token}")
    del env["PROCWIRE_TOKEN"]
    done = procwire(server, "run", "--", "echo", "hi", env=env)
    assert (done.returncode, done.stdout) == (0, b"hi\n"), done.stderr


# -- help ------------------------------------------------------------------------------------------

COMMANDS = (
    *("run", "shell", "attach", "ps", "clients", "logs", "wait"),
    *("stop", "release", "kill", "cp", "login", "logout", "share", "unshare"),
)


@pytest.mark.parametrize("command", [*COMMANDS, "token"])
def test_every_command_has_a_description_and_examples(server: Server, command: str) -> None:
    shown = procwire(server, command, "--help")
    assert shown.returncode == 0
    text = shown.stdout.decode()
    usage, description = text.split("\n\n", 2)[:2]
    assert usage.startswith(f"usage: procwire {command}")
    assert len(description.split()) >= 5, text  # a sentence, not just the usage line
    examples = text.split("\nexamples:\n", 1)
    assert len(examples) == 2 and f"procwire {command}" in examples[1], text


def test_bare_procwire_lists_every_command_with_a_line(server: Server) -> None:
    listed = procwire(server, env=cli_env(server, COLUMNS="80")).stderr.decode()
    for command in COMMANDS:
        assert re.search(rf"^    {command}\s+\w", listed, re.MULTILINE), (command, listed)
    commands = listed.split("\n  COMMAND\n", 1)[1].split("\n\n", 1)[0]
    assert not re.search(r"^ {5,}\w", commands, re.MULTILINE), commands  # no description wraps to a second line
    assert "procwire login" in listed
