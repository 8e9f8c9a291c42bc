"""The ``procwire`` command line: the parser, and errors turned into exit codes.

    procwire login URL                        (once; or PROCWIRE_URL / PROCWIRE_TOKEN)
    procwire run [options] -- CMD ARGS...     procwire shell [options] [-- CMD ARGS...]
    procwire ps | logs | wait | stop | release | kill | attach PROC | cp SRC DST | clients | recordings
    procwire share PROC [--view|--control] [--expires 1h]     procwire unshare ID     procwire attach LINK

The commands live in :mod:`procwire_client.commands`, the local terminal in
:mod:`procwire_client.terminal`; docs/cli.md is the manual, exit codes included.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from procwire_client import __version__, settings
from procwire_client.commands import copy, jobs, listing, login, recordings, running, server, sharing
from procwire_client.commands.common import (
    EXIT_BAD_CWD,
    EXIT_BROKEN_PIPE,
    EXIT_CANNOT_EXECUTE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CommandError,
    UsageError,
    complain,
    connection_options,
)
from procwire_client.errors import (
    NotFound,
    PermissionDenied,
    ProcwireConnectionError,
    ProcwireError,
    SpawnFailed,
)

EPILOG = """\
first steps:
  procwire login http://127.0.0.1:9999        # once: checks and keeps the URL and token
  procwire run -- uname -a
  procwire shell
  procwire COMMAND --help                     # each command's options and examples

The URL and token come from --url/--token, else $PROCWIRE_URL/$PROCWIRE_TOKEN, else procwire login's.
Exit status: the remote command's for run, shell, attach and wait (128+N after signal N); 124 timed out
(--timeout), 125 bad --cwd, 126 cannot execute or refused, 127 not found; 1 error, 2 usage, 3-5 cp
(no such file, not a directory, unsafe path), 130 interrupted, 141 output pipe closed.  See docs/cli.md.
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # websocketd's flags and a command line of its own: not this parser's to read
        return _run(lambda: server.cmd_serve(argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:  # bare `procwire`: what it can do, not just a usage line
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return _run(lambda: handler(args))


def _run(command: Callable[[], int]) -> int:
    """Run a command; its errors as one line on stderr and an exit code (docs/cli.md)."""
    try:
        return command()
    except UsageError as error:
        complain(error)
        return EXIT_USAGE
    except CommandError as error:
        complain(error)
        return error.code
    except (NotFound, PermissionDenied, SpawnFailed) as error:
        complain(error)
        return _start_failure_code(error)
    except (ProcwireError, ProcwireConnectionError, settings.SettingsError) as error:
        complain(error)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="procwire",
        description="Run and control processes on a procwire server.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"procwire {__version__}")
    connection_options(parser, None)
    # The same options after the subcommand; SUPPRESS keeps them from erasing the ones before it.
    common = argparse.ArgumentParser(add_help=False)
    connection_options(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in (running, listing, recordings, jobs, copy, login, server, sharing):
        module.register(commands, [common])
    return parser
