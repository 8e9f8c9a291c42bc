"""The ``procwire`` command line, run as a real subprocess against the real server."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import shlex
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import procwire_client as pw
from tests.server import ROOT, Server, pid_exists, wait_until

BOUND = 20.0  # seconds: every wait in these tests is bounded
COMMAND = [sys.executable, "-m", "procwire_client"]


def cli_env(server: Server, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROCWIRE_")}
    env.update({"PROCWIRE_URL": server.url, "PROCWIRE_TOKEN": server.token, **extra})
    return env


def procwire(
    server: Server, *args: str, input: bytes | None = None, env: dict[str, str] | None = None, **kwargs: object
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*COMMAND, *args],
        input=input,
        env=env if env is not None else cli_env(server),
        capture_output=True,
        timeout=BOUND,
        cwd=ROOT,
        **kwargs,  # type: ignore[arg-type]
    )


def one_line(stderr: bytes) -> str:
    text = stderr.decode()
    assert text.count("\n") == 1 and text.startswith("procwire: "), text
    return text


# -- run ----------------------------------------------------------------------------------------


def test_run_prints_both_streams_and_exits_with_the_code(server: Server) -> None:
    done = procwire(server, "run", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, b"out\n", b"err\n")


def test_installed_script(server: Server) -> None:
    script = Path(sys.executable).parent / "procwire"
    if not script.exists():
        pytest.skip("the procwire script is not installed in this environment")
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


class Terminal:
    """A shell script run on a pseudo-terminal we control (the test's side is ``fd``)."""

    def __init__(self, script: str, env: dict[str, str], rows: int = 33, cols: int = 101) -> None:
        size = struct.pack("HHHH", rows, cols, 0, 0)
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: a new session whose controlling terminal is the pty
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, size)
                os.chdir(ROOT)
                os.execve("/bin/sh", ["/bin/sh", "-c", script], env)
            finally:
                os._exit(127)
        self.output = b""
        self.status: int | None = None

    def write(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def _read(self, timeout: float) -> bool:
        """Read what is there; False at end of file."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: every process holding the terminal is gone
            return False
        self.output += data
        return bool(data)

    def read_until(self, pattern: str, timeout: float = BOUND, since: int = 0) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern.encode(), self.output[since:])
            if match:
                return match
            if not self._read(0.1):
                break
        raise AssertionError(f"{pattern!r} not seen; terminal shows {self.output[since:]!r}")

    def finish(self, timeout: float = BOUND) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(0.1):
            pass
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
            time.sleep(0.05)
        raise AssertionError(f"the terminal's script did not end; it shows {self.output!r}")

    def close(self) -> None:
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)  # the child leads its own session and group
            os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


def procwire_line(*args: str) -> str:
    return shlex.join([*COMMAND, *args])


def test_shell_in_a_real_terminal(server: Server, terminals: list[Terminal]) -> None:
    script = f'{procwire_line("shell", "-e", "PS1=remote$ ", "--", "sh")}; echo "rc=$?"; stty -a'
    terminal = Terminal(script, cli_env(server))
    terminals.append(terminal)
    terminal.read_until(r"remote\$ ")
    terminal.write("stty size; echo marker-$((6*7))\r")
    terminal.read_until(r"33 101\r\n")  # the window size was sent at the start
    terminal.read_until(r"marker-42\r\n")

    mark = len(terminal.output)
    terminal.resize(40, 120)  # SIGWINCH: the new size goes to the server
    deadline = time.monotonic() + BOUND
    while b"40 120" not in terminal.output[mark:] and time.monotonic() < deadline:
        terminal.write("stty size\r")
        with contextlib.suppress(AssertionError):
            terminal.read_until(r"\d+ \d+\r\n", timeout=1, since=len(terminal.output))
    assert b"40 120" in terminal.output[mark:]

    terminal.write("sleep 30\r")
    time.sleep(0.3)
    terminal.write("\x03")  # Ctrl-C reaches the remote foreground job
    terminal.write("echo after-$((1+1))\r")
    terminal.read_until(r"after-2\r\n")

    terminal.write("exit 5\r")
    assert terminal.finish() == 0
    after = terminal.output.decode(errors="replace").split("rc=5", 1)
    assert len(after) == 2, terminal.output
    settings = after[1]  # `stty -a` after procwire exited: the terminal is back to normal
    assert re.search(r"(?<![-\w])icanon\b", settings) and re.search(r"(?<![-\w])echo\b", settings), settings
    assert "-icanon" not in settings and "-echo " not in settings


def test_kept_shell_detaches_and_is_reattached(server: Server, lib: pw.Client, terminals: list[Terminal]) -> None:
    env = cli_env(server)
    first = Terminal(f'{procwire_line("shell", "--keep", "-e", "PS1=kept$ ", "--", "sh")}; echo "rc=$?"', env)
    terminals.append(first)
    proc = int(first.read_until(r"session (\d+)").group(1))
    try:
        first.read_until(r"kept\$ ")
        first.write("echo one-$((0+1))\r")
        first.read_until(r"one-1\r\n")
        first.write("~.")  # the escape, at the start of a line: detach
        first.read_until(r"detached from process")
        assert first.finish() == 0
        assert b"rc=0" in first.output
        assert proc in {info.proc for info in lib.list() if info.state == "running"}

        second = Terminal(f'{procwire_line("attach", "-i", str(proc))}; echo "rc=$?"', env)
        terminals.append(second)
        second.read_until(r"one-1")  # the replay
        second.write("echo two-$((1+1))\r")
        second.read_until(r"two-2\r\n")
        second.write("exit 3\r")
        assert second.finish() == 0
        assert b"rc=3" in second.output
    finally:
        with contextlib.suppress(pw.ProcessExited, pw.NoSuchProcess):
            lib.kill(proc)
    pid = next((info.pid for info in lib.list() if info.proc == proc), None)
    assert pid is None or wait_until(lambda: not pid_exists(pid))


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
