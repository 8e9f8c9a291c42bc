"""``procwire shell``, ``run -t`` and ``attach -i`` through a real pseudo-terminal, and shell through pipes."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

import procwire_client as pw
from tests.server import Server, pid_exists, wait_until
from tests.test_cli_support import BOUND, Terminal, cli_env, opened_terminals, procwire, procwire_line


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    yield from opened_terminals()


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


# -- shell without a terminal: like ssh host < script ---------------------------------------------


def test_shell_with_a_script_on_stdin_runs_it_and_exits_with_its_status(server: Server) -> None:
    """``printf 'echo hi\\n' | procwire shell`` never ended: now the shell reads stdin to its end, as ssh does."""
    done = procwire(server, "shell", input=b"echo hi\nexit 3\n")
    assert (done.returncode, done.stdout, done.stderr) == (3, b"hi\n", b"")
    plain = procwire(server, "shell", input=b"echo $((6*7)); echo err >&2\n")
    assert (plain.returncode, plain.stdout, plain.stderr) == (0, b"42\n", b"err\n")
    nothing = procwire(server, "shell", stdin=subprocess.DEVNULL)
    assert (nothing.returncode, nothing.stdout) == (0, b"")


# -- the local terminal is given back as it was -----------------------------------------------------

FULL_SCREEN_MODES = r"printf '\033[?1049h\033[?25l\033[?1h\033=\033[?1000h\033[?1006h\033[?2004h'"
RESTORED = (b"\x1b[?1049l", b"\x1b[?25h", b"\x1b[?1l", b"\x1b>", b"\x1b[?1000l", b"\x1b[?1006l", b"\x1b[?2004l")


def stty_after(terminal: Terminal, marker: str) -> str:
    after = terminal.output.decode(errors="replace").split(marker, 1)
    assert len(after) == 2, terminal.output
    return after[1]


def assert_cooked(settings: str) -> None:
    assert re.search(r"(?<![-\w])icanon\b", settings) and re.search(r"(?<![-\w])echo\b", settings), settings


def test_leaving_with_the_escape_restores_every_mode(server: Server, terminals: list[Terminal]) -> None:
    """After ``~.`` the cursor was left hidden and the keypad in application mode: now every mode is reset."""
    script = f'{procwire_line("shell", "-e", "PS1=remote$ ", "--", "sh")}; echo "rc=$?"; stty -a'
    terminal = Terminal(script, cli_env(server))
    terminals.append(terminal)
    terminal.read_until(r"remote\$ ")
    terminal.write(f"{FULL_SCREEN_MODES}; echo modes-$((2+2))\r")
    terminal.read_until(r"(?s)modes-4\r\n.*remote\$ ")
    mark = len(terminal.output)
    terminal.write("~.")
    terminal.read_until(r"connection closed", since=mark)
    assert terminal.finish() == 0
    after = terminal.output[mark:]
    for sequence in RESTORED:
        assert sequence in after, (sequence, after)
    assert_cooked(stty_after(terminal, "rc=255"))


def test_any_end_of_a_session_restores_the_modes(server: Server, terminals: list[Terminal]) -> None:
    """A program that exits with the cursor hidden: shown again; no alternate screen to leave, so no ?1049l
    (which would move the cursor)."""
    script = f'{procwire_line("shell", "-e", "PS1=remote$ ", "--", "sh")}; echo "rc=$?"; stty -a'
    terminal = Terminal(script, cli_env(server))
    terminals.append(terminal)
    terminal.read_until(r"remote\$ ")
    mark = len(terminal.output)
    terminal.write(r"printf '\033[?25l'; exit 4" + "\r")
    assert terminal.finish() == 0
    after = terminal.output[mark:]
    assert b"\x1b[?25h" in after.split(b"\x1b[?25l", 1)[1], after
    assert b"\x1b[?1049l" not in after
    assert_cooked(stty_after(terminal, "rc=4"))


# -- run -t ---------------------------------------------------------------------------------------------


def test_run_t_gives_the_command_a_terminal(server: Server, terminals: list[Terminal]) -> None:
    script = f'{procwire_line("run", "-t", "--", "sh", "-c", "tty; stty size; exit 6")}; echo "rc=$?"'
    terminal = Terminal(script, cli_env(server))
    terminals.append(terminal)
    terminal.read_until(r"/dev/pts/\d+\r\n")
    terminal.read_until(r"33 101\r\n")
    assert terminal.finish() == 0
    assert b"rc=6" in terminal.output


@pytest.mark.skipif(shutil.which("top") is None, reason="top is not installed")
def test_a_program_that_needs_a_terminal_gets_a_hint(server: Server, terminals: list[Terminal]) -> None:
    """``run -- top`` said only "failed tty get": now it also says how to give it a terminal."""
    terminal = Terminal(f'{procwire_line("run", "--", "top")}; echo "rc=$?"', cli_env(server))
    terminals.append(terminal)
    terminal.read_until(r"procwire: top may need a terminal: procwire run -t -- top\r\n")
    assert terminal.finish() == 0
    assert re.search(rb"rc=[1-9]", terminal.output), terminal.output
    piped = procwire(server, "run", "--", "top")  # not from a terminal: no hint, the error alone
    assert piped.returncode != 0 and b"run -t" not in piped.stderr


# -- re-attaching shows the screen, not the history ------------------------------------------------------


def test_reattaching_shows_the_current_screen_not_a_replay(
    server: Server, lib: pw.Client, terminals: list[Terminal]
) -> None:
    """Re-attaching replayed everything (327 KB of old top frames): now the current screen, then live output."""
    with pw.Client(server.url, server.token) as starter:
        kept = starter.start(["sh"], pty=(33, 101), on_disconnect="keep", env={"PS1": "remote$ "})
        kept.write("seq 1 3000; clear; echo screen-$((3*3))\r")
        seen = b""
        for _stream, data in kept.iter_output(BOUND):
            seen += data
            if b"screen-9\r\n" in seen:
                break
    try:
        terminal = Terminal(f'{procwire_line("attach", "-i", str(kept.proc))}; echo "rc=$?"', cli_env(server))
        terminals.append(terminal)
        terminal.read_until(r"screen-9")
        terminal.write("echo live-$((4+4))\r")
        terminal.read_until(r"live-8\r\n")
        assert b"\r\n1500\r\n" not in terminal.output  # the history was not replayed
        terminal.write("exit 2\r")
        assert terminal.finish() == 0
        assert b"rc=2" in terminal.output
    finally:
        with contextlib.suppress(pw.ProcessExited, pw.NoSuchProcess):
            lib.kill(kept.proc)
