"""``run``, ``shell`` and ``attach``: a remote command's output here, our input there, its status ours."""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import re
import shlex
import signal
import threading
from collections.abc import Iterator
from typing import Any

from procwire_client import Client, ExitStatus, Process, share_link
from procwire_client.commands.common import (
    EXIT_BROKEN_PIPE,
    UsageError,
    add_command,
    command_words,
    connect,
    exit_code,
    note,
    read_stdin,
    spawn_kwargs,
    spawn_options,
    thread,
    write_all,
)
from procwire_client.errors import ProcwireConnectionError, ProcwireError
from procwire_client.terminal import is_terminal, terminal_session, terminal_size

Errors = (ProcwireError, ProcwireConnectionError)
DEFAULT_SHELL = ["/bin/sh", "-c", 'exec "${SHELL:-/bin/sh}"']
SHELL_LABEL = "shell"  # what ps shows for the default shell, instead of DEFAULT_SHELL's words
TAIL_BYTES = 4096
NEEDS_TERMINAL = re.compile(rb"\btty\b|terminal", re.IGNORECASE)


def register(commands: Any, common: list[argparse.ArgumentParser]) -> None:
    run = add_command(
        commands,
        "run",
        common,
        "run a command, stream its output, exit with its status",
        "Run CMD on the server: its stdout and stderr come here as they are written, our stdin goes to it\n"
        "(-n: none), Ctrl-C and other signals go to it, and procwire exits with its status (128+N after\n"
        "signal N).  -t gives it a terminal, as docker run -t and kubectl exec -t do: for programs such as\n"
        "top or vim.  -d leaves it running on the server (a kept process) and prints its id.",
        """
procwire run -- sh -c 'echo out; echo err >&2; exit 3'
echo hello | procwire run -- tr a-z A-Z
procwire run --cwd /srv --timeout 60 -e LANG=C.UTF-8 -- make test
procwire run -t -- top
proc=$(procwire run -d --name build -- make); procwire logs -f "$proc"; procwire wait "$proc"
""",
    )
    spawn_options(run)
    run.add_argument("-n", "--no-stdin", action="store_true", help="do not forward stdin (the command reads nothing)")
    run.add_argument(
        "-t", "--tty", action="store_true", help="run it on a terminal (raw keys when stdin is one; ~. leaves)"
    )
    run.add_argument(
        "-d", "--detach", action="store_true", help="keep it running on the server; print its id and exit 0"
    )
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    run.set_defaults(handler=cmd_run)

    shell = add_command(
        commands,
        "shell",
        common,
        "an interactive terminal session, or a script from stdin",
        "Open a terminal session on the server running $SHELL (or CMD).  When our stdin is a terminal the\n"
        "session gets a remote terminal: keys go to it raw, its screen comes here, the window size follows\n"
        "ours, and ~. (after Enter) leaves.  When stdin is not a terminal it runs without one, like\n"
        "ssh host < script: the shell reads stdin to its end and procwire exits with its status.\n"
        "--keep lets the session survive the connection: ~. then detaches, attach -i returns to it.",
        """
procwire shell
procwire shell --keep -- top
printf 'cd /srv && make\\n' | procwire shell
procwire shell < deploy.sh
""",
    )
    spawn_options(shell)
    shell.add_argument(
        "--keep", action="store_true", help="keep the session running after a disconnect (reattach with attach -i)"
    )
    shell.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS... (default: the server's $SHELL)")
    shell.set_defaults(handler=cmd_shell)

    attach = add_command(
        commands,
        "attach",
        common,
        "follow a process's output, or (-i) go back into a session",
        "Receive a process's output: what its history still holds, then the live output, then its exit\n"
        "status as ours.  -i is terminal mode for a session (shell --keep): keys go to it, and the\n"
        "current screen is shown (not a replay of everything it ever printed); ~. detaches again.",
        """
procwire attach 7
procwire attach 7 --offset 1024
procwire attach -i 7
procwire attach 'ws://host:9999/ws?share=...'     # a share link (procwire share): view or control
""",
    )
    attach.add_argument("proc", help="the process id (see ps), or a share link (procwire share)")
    attach.add_argument("--offset", type=int, help="replay stdout from this byte offset (default: all kept output)")
    attach.add_argument(
        "-i", "--interactive", action="store_true", help="terminal mode: raw keys to the process, ~. detaches"
    )
    attach.set_defaults(handler=cmd_attach)


# -- run -------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    argv = command_words(args.command)
    kwargs = spawn_kwargs(args)
    if args.detach:
        return _run_detached(args, argv, kwargs)
    if args.tty:
        with connect(args) as client:
            process = client.start(argv, pty=terminal_size(), binary=True, **kwargs)
            return exit_code(terminal_session(client, process, close_at_eof=True, detachable=False))
    return _run_piped(args, argv, kwargs, stdin=not args.no_stdin, hint=True)


def _run_detached(args: argparse.Namespace, argv: list[str], kwargs: dict[str, Any]) -> int:
    """Start a kept process and print its id: ``logs``, ``wait``, ``attach`` find it later."""
    pty = terminal_size() if args.tty else None
    with connect(args) as client:
        process = client.start(argv, stdin="null", on_disconnect="keep", pty=pty, **kwargs)
    print(process.proc, flush=True)
    return 0


def _run_piped(
    args: argparse.Namespace,
    argv: list[str],
    kwargs: dict[str, Any],
    *,
    stdin: bool,
    command: str | None = None,
    hint: bool = False,
) -> int:
    """Pipes both ways: our stdin to it (closed at our end of file), its stdout and stderr to ours.

    With ``hint``, a failure whose output mentions a terminal ("failed tty get"), run from a terminal,
    ends with a line suggesting ``run -t``."""
    tail = _OutputTail()
    with connect(args) as client:
        process = client.start(argv, stdin="pipe" if stdin else "null", binary=True, command=command, **kwargs)
        if stdin:
            thread(forward_stdin, process, True)
        try:
            with forwarded_signals(process):
                status = copy_output(process, tail)
        except BrokenPipeError:
            return EXIT_BROKEN_PIPE  # our stdout is gone: closing the connection stops the command
    code = exit_code(status)
    if code and hint and tail.mentions_a_terminal() and is_terminal() and os.isatty(1):
        note(f"{argv[0]} may need a terminal: procwire run -t -- {shlex.join(argv)}")
    return code


class _OutputTail:
    """The last bytes of output, to tell a program that wanted a terminal ("failed tty get")."""

    def __init__(self) -> None:
        self.data = b""

    def feed(self, data: bytes) -> None:
        self.data = (self.data + data)[-TAIL_BYTES:]

    def mentions_a_terminal(self) -> bool:
        return NEEDS_TERMINAL.search(self.data) is not None


def copy_output(process: Process, tail: _OutputTail | None = None) -> ExitStatus | None:
    """Remote stdout to our stdout, stderr to stderr, as they arrive; the exit status
    (``None`` after a detach)."""
    for stream, data in process:
        write_all(2 if stream == "stderr" else 1, data)
        if tail is not None:
            tail.feed(data)
    return process.exit_status


def forward_stdin(process: Process, close_at_eof: bool) -> None:
    """Local stdin to the process until end of file (then close its stdin).

    Runs in a daemon thread, so a terminal nobody types into never holds up
    the exit; reads the file descriptor directly, with no buffer to lose.
    """
    try:
        while data := read_stdin():
            process.write(data)
        if close_at_eof:
            process.close_stdin()
    except Errors:
        pass  # the process exited or stopped reading: nothing more to forward


@contextlib.contextmanager
def forwarded_signals(process: Process) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP go to the remote process group; a second SIGINT
    gives up locally (the connection closes and the server stops the command)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    requests: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    interrupts = 0

    def handler(signum: int, frame: Any) -> None:
        nonlocal interrupts
        if signum == signal.SIGINT:
            interrupts += 1
            if interrupts > 1:
                raise KeyboardInterrupt
        requests.put(signal.Signals(signum).name)

    def forward() -> None:
        while (name := requests.get()) is not None:
            with contextlib.suppress(*Errors):
                process.signal(name)

    thread(forward)
    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        requests.put(None)


# -- shell and attach ------------------------------------------------------------------------


def cmd_shell(args: argparse.Namespace) -> int:
    argv = command_words(args.command, DEFAULT_SHELL)
    label = SHELL_LABEL if argv is DEFAULT_SHELL else None
    kwargs = spawn_kwargs(args)
    if args.keep:
        kwargs["on_disconnect"] = "keep"
    if not is_terminal():  # ssh host < script: no terminal, stdin to its end, the shell's status
        return _run_piped(args, argv, kwargs, stdin=True, command=label)
    with connect(args) as client:
        process = client.start(argv, pty=terminal_size(), binary=True, command=label, **kwargs)
        if args.keep:
            note(f"session {process.proc}: ~. detaches, procwire attach -i {process.proc} returns to it")
        status = terminal_session(client, process, close_at_eof=True, detachable=args.keep)
    return exit_code(status)


def cmd_attach(args: argparse.Namespace) -> int:
    if args.proc.startswith(("ws://", "wss://")):
        return _attach_link(args)
    if not args.proc.isdigit():
        raise UsageError(f"not a process id nor a share link: {args.proc!r}")
    proc = int(args.proc)
    with connect(args) as client:
        if args.interactive:
            return exit_code(_attach_terminal(client, proc, args.offset))
        process = client.attach(proc, offset=args.offset, binary=True)
        _note_truncation(process, args.offset)
        return exit_code(copy_output(process))


def _attach_link(args: argparse.Namespace) -> int:
    """A share link's process: driven from our terminal with a control link, watched otherwise (its
    current screen first when ours is a terminal; the keys typed here go nowhere)."""
    try:
        url, token = share_link(args.proc)
    except ValueError as error:
        raise UsageError(str(error)) from None
    with Client(url, token) as client:
        grant = client.hello.get("identity", {}).get("share")
        if not grant:
            raise UsageError(f"{url} did not take this link as a share link")
        proc, mode = grant["proc"], grant["mode"]
        if mode == "control" and is_terminal():
            return exit_code(_attach_terminal(client, proc, args.offset))
        watch = args.offset is None and os.isatty(1)
        process = client.attach(proc, offset=args.offset, binary=True, snapshot=watch, mode=mode)
        _note_truncation(process, args.offset)
        return exit_code(copy_output(process))


def _attach_terminal(client: Client, proc: int, offset: int | None) -> ExitStatus | None:
    """Back into a session: our window size first, then its current screen (a replay only from ``--offset``)."""
    with contextlib.suppress(*Errors):
        client.resize(proc, *terminal_size())  # not a pty: nothing to resize
    process = client.attach(proc, offset=offset, binary=True, snapshot=offset is None)
    _note_truncation(process, offset)
    return terminal_session(client, process, close_at_eof=False, detachable=True)


def _note_truncation(process: Process, offset: int | None) -> None:
    if process.attachment is not None and process.attachment.truncated and offset is not None:
        note(f"output of process {process.proc} before the kept buffer was dropped")
