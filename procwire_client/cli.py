"""The ``procwire`` command line.

    procwire run [--url URL] [--token TOKEN] [options] -- CMD ARGS...
    procwire shell [options] [-- CMD ARGS...]
    procwire ps | attach PROC | kill PROC [--signal SIG] | clients

The URL and token come from ``--url``/``--token`` or ``PROCWIRE_URL`` /
``PROCWIRE_TOKEN`` (default URL ``ws://127.0.0.1:9999/ws``).

Exit status: ``run``, ``shell`` and ``attach`` exit with the remote
command's status (128+N when signal N killed it), 127 when the command was
not found, 126 when it could not be executed, 125 when its working
directory was not usable (as ``env -C``), 124 when ``--timeout``
stopped it (as ``timeout(1)``); 0 after a detach; 1 for any
other error (connection refused, bad token, an error answer), printed as one
line on stderr; 2 for a usage error; 130 when interrupted locally.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shlex
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from procwire_client import __version__
from procwire_client.address import http_base, websocket_url
from procwire_client.client import DEFAULT_URL, Client, ExitStatus, Process
from procwire_client.errors import (
    NotFound,
    PermissionDenied,
    ProcwireConnectionError,
    ProcwireError,
    SpawnFailed,
)

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMED_OUT = 124  # as timeout(1)
EXIT_BAD_CWD = 125  # as env --chdir
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 128 + 13
EXIT_DISCONNECTED = 255
DEFAULT_SHELL = ["/bin/sh", "-c", 'exec "${SHELL:-/bin/sh}"']
READ_SIZE = 64 * 1024
ESCAPE = ord("~")
ESCAPE_LEAVE = ord(".")
LINE_ENDS = (ord("\r"), ord("\n"))

Errors = (ProcwireError, ProcwireConnectionError)


class UsageError(Exception):
    """A mistake in the command line that argparse cannot see."""


# -- entry point -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:  # bare `procwire`: what it can do, not just a usage line
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except UsageError as error:
        _complain(error)
        return EXIT_USAGE
    except (NotFound, PermissionDenied, SpawnFailed) as error:
        _complain(error)
        return _start_failure_code(error)
    except Errors as error:
        _complain(error)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `procwire attach 7 | head`: the reader is gone, as for any filter
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _start_failure_code(error: ProcwireError) -> int:
    """127 not found, 125 a working directory that is not usable (as ``env -C``), 126 any other refusal to run."""
    if isinstance(error, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(error.data, dict) and error.data.get("field") == "cwd":
        return EXIT_BAD_CWD
    return EXIT_CANNOT_EXECUTE


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush finds no closed pipe to complain of."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _complain(error: BaseException) -> None:
    text = " ".join(str(error).split()) or type(error).__name__
    print(f"procwire: {text}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="procwire",
        description="Run and control processes on a procwire server.",
        epilog="URL and token default to $PROCWIRE_URL and $PROCWIRE_TOKEN. "
        "Exit status: the remote command's (128+N for signal N) for run, shell and attach; "
        "127 command not found, 126 cannot execute, 125 bad --cwd, 124 timed out (--timeout); 1 error; 2 usage; "
        "130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"procwire {__version__}")
    _connection_options(parser, None)
    # The same options after the subcommand; SUPPRESS keeps them from erasing the ones before it.
    common = argparse.ArgumentParser(add_help=False)
    _connection_options(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser("run", parents=[common], help="run a command, stream its output, exit with its status")
    _spawn_options(run)
    run.add_argument("-n", "--no-stdin", action="store_true", help="do not forward stdin (the command reads nothing)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    run.set_defaults(handler=cmd_run)

    shell = commands.add_parser("shell", parents=[common], help="an interactive terminal session")
    _spawn_options(shell)
    shell.add_argument(
        "--keep", action="store_true", help="keep the session running after a disconnect (reattach with attach -i)"
    )
    shell.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS... (default: the server's $SHELL)")
    shell.set_defaults(handler=cmd_shell)

    ps = commands.add_parser("ps", parents=[common], help="list the processes of this token")
    ps.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    ps.set_defaults(handler=cmd_ps)

    attach = commands.add_parser("attach", parents=[common], help="follow the output of a process (replay, then live)")
    attach.add_argument("proc", type=int, help="the process id (see ps)")
    attach.add_argument("--offset", type=int, help="replay stdout from this byte offset (default: all kept output)")
    attach.add_argument(
        "-i", "--interactive", action="store_true", help="terminal mode: raw keys to the process, ~. detaches"
    )
    attach.set_defaults(handler=cmd_attach)

    kill = commands.add_parser("kill", parents=[common], help="send a signal to a process group (default TERM)")
    kill.add_argument("proc", type=int, help="the process id (see ps)")
    kill.add_argument("-s", "--signal", default="TERM", help="signal name or number (default TERM)")
    kill.set_defaults(handler=cmd_kill)

    clients = commands.add_parser("clients", parents=[common], help="list the server's connections (GET /api/clients)")
    clients.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    clients.set_defaults(handler=cmd_clients)

    token = commands.add_parser("token", help="make a new token and print the lines for the server's TOML file")
    token.add_argument("name", help="who holds the token (shown in the audit log and in owner fields)")
    token.add_argument("--role", choices=("user", "admin"), default="user", help="default: user")
    token.set_defaults(handler=cmd_token)
    return parser


def _connection_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("--url", default=default, help=f"server WebSocket URL (default $PROCWIRE_URL or {DEFAULT_URL})")
    parser.add_argument("--token", default=default, help="bearer token (default $PROCWIRE_TOKEN)")


def _spawn_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="set a variable (NAME alone: local value)",
    )
    parser.add_argument("--cwd", help="working directory on the server")
    parser.add_argument("--timeout", type=float, help="stop the command after this many seconds")
    parser.add_argument("--name", help="a label shown by ps")


def _url_and_token(args: argparse.Namespace) -> tuple[str, str]:
    given = getattr(args, "url", None) or os.environ.get("PROCWIRE_URL") or DEFAULT_URL
    url, token_in_url = websocket_url(given)
    token = getattr(args, "token", None) or os.environ.get("PROCWIRE_TOKEN") or token_in_url
    if not token:
        raise UsageError("no token: pass --token, set PROCWIRE_TOKEN or put ?token= in the URL")
    return url, token


def _connect(args: argparse.Namespace) -> Client:
    url, token = _url_and_token(args)
    return Client(url, token)


def _command(words: list[str], default: list[str] | None = None) -> list[str]:
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        if default is None:
            raise UsageError("no command given: procwire run -- CMD ARGS...")
        return default
    return words


def _environment(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            if name not in os.environ:
                raise UsageError(f"--env {name}: not set here; use NAME=VALUE")
            value = os.environ[name]
        if not name:
            raise UsageError(f"--env {pair!r}: expected NAME=VALUE")
        env[name] = value
    return env


def _spawn_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"env": _environment(args.env), "cwd": args.cwd, "timeout": args.timeout, "name": args.name}


# -- run -------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    command = _command(args.command)
    kwargs = _spawn_kwargs(args)
    with _connect(args) as client:
        process = client.start(command, stdin="null" if args.no_stdin else "pipe", binary=True, **kwargs)
        if not args.no_stdin:
            _thread(_forward_stdin, process, True)
        try:
            with _forwarded_signals(process):
                status = _copy_output(process)
        except BrokenPipeError:
            return EXIT_BROKEN_PIPE  # our stdout is gone: closing the connection stops the command
    return _exit_code(status)


def _copy_output(process: Process) -> ExitStatus | None:
    """Remote stdout to our stdout, stderr to stderr, as they arrive; the exit status
    (``None`` after a detach)."""
    for stream, data in process:
        _write_all(1 if stream == "stdout" else 2, data)
    return process.exit_status


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _exit_code(status: ExitStatus | None) -> int:
    """The remote command's status as ours; 124 with a line on stderr when its ``--timeout`` stopped it,
    as ``timeout(1)`` does."""
    if status is None:
        return 0
    if status.timed_out:
        after = f" after {status.duration:g} s" if status.duration is not None else ""
        _note(f"the command timed out{after} (--timeout) and was stopped")
        return EXIT_TIMED_OUT
    return status.exit_code


def _thread(target: Callable[..., None], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _forward_stdin(process: Process, close_at_eof: bool) -> None:
    """Local stdin to the process until end of file (then close its stdin).

    Runs in a daemon thread, so a terminal nobody types into never holds up
    the exit; reads the file descriptor directly, with no buffer to lose.
    """
    try:
        while data := _read_stdin():
            process.write(data)
        if close_at_eof:
            process.close_stdin()
    except Errors:
        pass  # the process exited or stopped reading: nothing more to forward


def _read_stdin() -> bytes:
    try:
        return os.read(0, READ_SIZE)
    except OSError:
        return b""  # stdin closed or unreadable: end of file


@contextlib.contextmanager
def _forwarded_signals(process: Process) -> Iterator[None]:
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

    _thread(forward)
    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        requests.put(None)


# -- shell and attach -i ---------------------------------------------------------------------


def cmd_shell(args: argparse.Namespace) -> int:
    command = _command(args.command, DEFAULT_SHELL)
    kwargs = _spawn_kwargs(args)
    with _connect(args) as client:
        process = client.start(
            command, pty=_terminal_size(), binary=True, on_disconnect="keep" if args.keep else None, **kwargs
        )
        if args.keep:
            _note(f"session {process.proc}: ~. detaches, procwire attach -i {process.proc} returns to it")
        status = _terminal_session(client, process, close_at_eof=True, detachable=args.keep)
    return _exit_code(status)


def cmd_attach(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        process = client.attach(args.proc, offset=args.offset)
        if process.attachment is not None and process.attachment.truncated and args.offset is not None:
            _note(f"output of process {args.proc} before the kept buffer was dropped")
        if args.interactive:
            with contextlib.suppress(*Errors):
                process.resize(*_terminal_size())  # not a pty: nothing to resize
            status = _terminal_session(client, process, close_at_eof=False, detachable=True)
        else:
            status = _copy_output(process)
    return _exit_code(status)


def _note(text: str) -> None:
    print(f"procwire: {text}", file=sys.stderr, flush=True)


def _terminal_size() -> tuple[int, int]:
    for fd in (0, 1, 2):
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        if size.lines > 0 and size.columns > 0:
            return size.lines, size.columns
    return 24, 80


class _Leave:
    """What the ``~.`` escape does: detach a kept session, else drop the connection."""

    def __init__(self, client: Client, process: Process, detachable: bool) -> None:
        self.client = client
        self.process = process
        self.detachable = detachable
        self.left = False

    def __call__(self) -> None:
        self.left = True
        if self.detachable:
            with contextlib.suppress(*Errors):
                self.process.detach()
                return
        self.client.close()


def _terminal_session(client: Client, process: Process, *, close_at_eof: bool, detachable: bool) -> ExitStatus | None:
    """Our terminal wired to a remote pty: raw keys in, output out, window size kept.

    The terminal's settings are restored whatever ends the session.
    """
    fd = 0
    terminal = os.isatty(fd)
    saved = _termios().tcgetattr(fd) if terminal else None
    leave = _Leave(client, process, detachable)
    previous: dict[int, Any] = {}
    try:
        if terminal:
            import tty

            tty.setraw(fd, _termios().TCSANOW)  # TCSANOW: keys typed ahead stay
        if threading.current_thread() is threading.main_thread():
            previous = _session_signals(process, terminal)
        _thread(_forward_keys, process, leave if terminal else None, close_at_eof and not terminal)
        try:
            status = _copy_output(process)
        except ProcwireConnectionError:
            if not leave.left:
                raise
            status = None
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        if saved is not None:
            _termios().tcsetattr(fd, _termios().TCSADRAIN, saved)
    if leave.left and status is None:
        _note(f"detached from process {process.proc}" if detachable else "connection closed")
        return None if detachable else ExitStatus(proc=process.proc, code=EXIT_DISCONNECTED)
    return status


def _termios() -> Any:
    import termios

    return termios


def _session_signals(process: Process, terminal: bool) -> dict[int, Any]:
    """SIGWINCH sends the new window size; SIGTERM and SIGHUP end the session
    (through the ``finally`` that restores the terminal)."""
    sizes: queue.SimpleQueue[bool] = queue.SimpleQueue()

    def resize_forever() -> None:
        while sizes.get():
            with contextlib.suppress(*Errors):
                process.resize(*_terminal_size())

    def quit_session(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous: dict[int, Any] = {}
    if terminal:
        _thread(resize_forever)
        previous[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, lambda signum, frame: sizes.put(True))
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous[signum] = signal.signal(signum, quit_session)
    return previous


def _forward_keys(process: Process, leave: _Leave | None, close_at_eof: bool) -> None:
    """Keys to the process unchanged, except the ``~.`` escape at the start of a line."""
    escape = _Escape()
    try:
        while data := _read_stdin():
            if leave is None:
                process.write(data)
                continue
            data, leaving = escape.feed(data)
            if data:
                process.write(data)
            if leaving:
                leave()
                return
        if close_at_eof:
            process.close_stdin()  # on a pty: ^D
    except Errors:
        pass


class _Escape:
    """ssh's escape: ``~.`` right after Enter (or first) leaves; ``~~`` sends one ``~``."""

    def __init__(self) -> None:
        self.at_line_start = True
        self.tilde = False

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        if ESCAPE not in data and not self.tilde:
            self.at_line_start = data[-1] in LINE_ENDS
            return data, False
        out = bytearray()
        for byte in data:
            if self.tilde:
                self.tilde = False
                if byte == ESCAPE_LEAVE:
                    return bytes(out), True
                out.append(ESCAPE)
                if byte == ESCAPE:
                    self.at_line_start = False
                    continue
            elif self.at_line_start and byte == ESCAPE:
                self.tilde = True
                continue
            out.append(byte)
            self.at_line_start = byte in LINE_ENDS
        return bytes(out), False


# -- ps, kill, clients -------------------------------------------------------------------------


def cmd_ps(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        answer = client.call("list")
    if args.json:
        print(json.dumps(answer["processes"], indent=2))
        return 0
    rows = [("PROC", "PID", "STATE", "EXIT", "STARTED", "FLAGS", "NODE", "NAME", "COMMAND")]
    for info in answer["processes"]:
        status = ExitStatus.from_json(info["exit"]) if info.get("exit") else None
        rows.append(
            (
                str(info.get("proc")),
                str(info.get("pid")),
                str(info.get("state")),
                _exit_column(status),
                _time(info.get("started_at")),
                _flags(info),
                info.get("node") or "-",
                info.get("name") or "-",
                shlex.join(info.get("argv") or []),
            )
        )
    _table(rows)
    return 0


def _exit_column(status: ExitStatus | None) -> str:
    if status is None:
        return "-"
    if status.lost:
        return "lost"
    return str(status.code) if status.code is not None else str(status.signal)


def _flags(info: dict[str, Any]) -> str:
    """``pty``, ``keep`` and how many connections receive the output (``attached=N``)."""
    flags = ["pty"] if info.get("pty") else []
    if info.get("on_disconnect") == "keep":
        flags.append("keep")
    if isinstance(info.get("attached"), int):
        flags.append(f"attached={info['attached']}")
    return ",".join(flags) or "-"


def cmd_kill(args: argparse.Namespace) -> int:
    sig: str | int = int(args.signal) if args.signal.isdigit() else args.signal
    with _connect(args) as client:
        client.signal(args.proc, sig)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Runs on the server's machine; needs no connection (config.token, also ``procwire-token``)."""
    from config.token import name_problem, print_new_token

    problem = name_problem(args.name)
    if problem:
        raise UsageError(problem)
    print_new_token(args.name, args.role)
    return 0


def cmd_clients(args: argparse.Namespace) -> int:
    url, token = _url_and_token(args)
    endpoint = http_base(url) + "/api/clients"
    request = urllib.request.Request(endpoint, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as error:
        detail = ""
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(error.read() or b"{}").get("error", "")
        raise ProcwireConnectionError(f"{endpoint}: HTTP {error.code}: {detail or error.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise ProcwireConnectionError(f"cannot reach {endpoint}: {reason}") from None
    if args.json:
        print(json.dumps(answer["clients"], indent=2))
        return 0
    rows = [("ID", "REMOTE", "CONNECTED", "PROCESSES")]
    for client in answer["clients"]:
        procs = ",".join(str(proc) for proc in client.get("processes") or []) or "-"
        rows.append((str(client.get("id")), str(client.get("remote_addr")), _time(client.get("connected_at")), procs))
    _table(rows)
    return 0


def _time(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
