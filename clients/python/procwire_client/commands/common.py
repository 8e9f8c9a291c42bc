"""What every subcommand shares: exit codes, messages, the connection, spawn options."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from procwire_client import DEFAULT_URL, Client, ExitStatus, settings
from procwire_client.address import http_base, websocket_url
from procwire_client.errors import ProcwireConnectionError

# Exit codes (docs/cli.md).  run, shell, attach and wait otherwise exit with the remote command's status.
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NO_SUCH_FILE = 3  # cp: a source or target that does not exist
EXIT_NOT_A_DIRECTORY = 4  # cp: a path that should be a directory is not
EXIT_UNSAFE_PATH = 5  # cp: an archive member that would land outside the target
EXIT_TIMED_OUT = 124  # as timeout(1)
EXIT_BAD_CWD = 125  # as env --chdir
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
EXIT_INTERRUPTED = 130
API_TIMEOUT = 10.0  # seconds for an answer of the HTTP API (between two reads of a file)
EXIT_BROKEN_PIPE = 128 + 13
EXIT_DISCONNECTED = 255
READ_SIZE = 64 * 1024


class UsageError(Exception):
    """A mistake in the command line that argparse cannot see."""


class CommandError(Exception):
    """A failure said in one line, with its own exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def note(text: str) -> None:
    print(f"procwire: {text}", file=sys.stderr, flush=True)


def complain(error: BaseException) -> None:
    note(" ".join(str(error).split()) or type(error).__name__)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_stdin() -> bytes:
    try:
        return os.read(0, READ_SIZE)
    except OSError:
        return b""  # stdin closed or unreadable: end of file


def thread(target: Callable[..., None], *args: Any) -> threading.Thread:
    started = threading.Thread(target=target, args=args, daemon=True)
    started.start()
    return started


def exit_code(status: ExitStatus | None) -> int:
    """The remote command's status as ours; 124 with a line on stderr when its ``--timeout`` stopped it,
    as ``timeout(1)`` does; 0 when there is none (after a detach)."""
    if status is None:
        return 0
    if status.timed_out:
        after = f" after {status.duration:g} s" if status.duration is not None else ""
        note(f"the command timed out{after} (--timeout) and was stopped")
        return EXIT_TIMED_OUT
    return status.exit_code


# -- parsers -------------------------------------------------------------------------------


def add_command(
    commands: Any, name: str, parents: list[argparse.ArgumentParser], summary: str, description: str, examples: str
) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` says what it does and shows examples; ``summary`` is its line in the list."""
    return commands.add_parser(
        name,
        parents=parents,
        help=summary,
        description=description,
        epilog="examples:\n" + "\n".join(f"  {line}" if line else "" for line in examples.strip("\n").splitlines()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def connection_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--url", default=default, help=f"server URL (default $PROCWIRE_URL, else procwire login's, else {DEFAULT_URL})"
    )
    parser.add_argument(
        "--token", default=default, help="bearer token (default $PROCWIRE_TOKEN, else procwire login's)"
    )


def spawn_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="set a variable (NAME alone: local value)",
    )
    parser.add_argument("--cwd", help="working directory on the server")
    parser.add_argument("--timeout", type=float, help="stop the command after this many seconds (exit 124)")
    parser.add_argument("--name", help="a label shown by ps")
    parser.add_argument(
        "--record",
        nargs="?",
        const="output",
        choices=("output", "input"),
        help="record the session on the server (procwire recordings); --record=input: what is typed too",
    )


# -- connection ----------------------------------------------------------------------------


def url_and_token(args: argparse.Namespace) -> tuple[str, str]:
    """The server and token: flags, then ``PROCWIRE_URL``/``PROCWIRE_TOKEN``, then a ``?token=`` in the URL,
    then what ``procwire login`` stored; the stored token goes only to the stored server."""
    stored = settings.load()
    given = getattr(args, "url", None) or os.environ.get("PROCWIRE_URL") or (stored.url if stored else DEFAULT_URL)
    url, token_in_url = websocket_url(given)
    token = getattr(args, "token", None) or os.environ.get("PROCWIRE_TOKEN") or token_in_url
    if not token and stored is not None and url == stored.url:
        token = stored.token
    if not token:
        raise UsageError("no token: run procwire login URL, pass --token or set PROCWIRE_TOKEN")
    return url, token


@contextlib.contextmanager
def open_api(args: argparse.Namespace, path: str) -> Iterator[http.client.HTTPResponse]:
    """GET ``path`` of the server's HTTP API with the token; its errors as ProcwireConnectionError."""
    url, token = url_and_token(args)
    endpoint = http_base(url) + path
    request = urllib.request.Request(endpoint, headers={"Authorization": f"Bearer {token}"})
    try:
        response = urllib.request.urlopen(request, timeout=API_TIMEOUT)
    except urllib.error.HTTPError as error:
        detail = ""
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(error.read() or b"{}").get("error", "")
        raise ProcwireConnectionError(f"{endpoint}: HTTP {error.code}: {detail or error.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise ProcwireConnectionError(f"cannot reach {endpoint}: {reason}") from None
    with response:
        yield response


def connect(args: argparse.Namespace) -> Client:
    url, token = url_and_token(args)
    return Client(url, token)


# -- what to start -------------------------------------------------------------------------


def command_words(words: list[str], default: list[str] | None = None) -> list[str]:
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        if default is None:
            raise UsageError("no command given: procwire run -- CMD ARGS...")
        return default
    return words


def environment(pairs: list[str]) -> dict[str, str]:
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


def spawn_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    record = {"input": True} if args.record == "input" else args.record is not None
    return {"env": environment(args.env), "cwd": args.cwd, "timeout": args.timeout, "name": args.name, "record": record}
