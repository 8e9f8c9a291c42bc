"""Server-side subcommands (``token``, ``serve``): listed by every ``procwire``, run by the server's distribution.

The client distribution (``procwire-client``) carries no server code: these commands find
their implementation through the ``procwire.server_commands`` entry points that the server's
distribution (``procwire``) declares, so nothing here imports the server's packages by name
(their generic names, ``app`` and ``config``, could be anybody's).  Without the server installed
they say, in one line, how to install it.
"""

from __future__ import annotations

import argparse
from importlib.metadata import entry_points
from typing import Any

from procwire_client.commands.common import CommandError, UsageError, add_command

ENTRY_POINTS = "procwire.server_commands"  # declared by the server's pyproject.toml


def register(commands: Any, common: list[argparse.ArgumentParser]) -> None:
    token = add_command(
        commands,
        "token",
        [],
        "make a token and its lines for the server's TOML file",
        "Make a new random token for NAME and print it with the [[tokens]] table to add to the\n"
        "server's TOML file (PROCWIRE_CONFIG); the file keeps only its SHA-256.  Runs on the server's\n"
        "machine, without a connection, and needs the server installed there (not only procwire-client).",
        """
procwire token alice
procwire token ops --role admin
""",
    )
    token.add_argument("name", help="who holds the token (shown in the audit log and in owner fields)")
    token.add_argument("--role", choices=("user", "admin"), default="user", help="default: user")
    token.set_defaults(handler=cmd_token)
    # Listed here; its command line (websocketd's flags, then a command of its own) is read by the
    # server's module, never by this parser: procwire_client.cli hands it over untouched.
    add_command(
        commands,
        "serve",
        [],
        "start the server, taking websocketd's flags and command line",
        "Start the procwire server (gunicorn) and serve programs over WebSockets as websocketd does;\n"
        "procwire serve --help lists the flags.  Needs the server installed (a procwire checkout).",
        """
procwire serve --port=8080 ./count.sh
procwire serve --port=8080 --dir=./scripts --staticdir=./web
""",
    )


def server_module(command: str) -> Any | None:
    """The server's module for ``command``, or None when the server is not installed (also used by
    procwire_client.testing, whose launcher starts the server that ``serve`` describes)."""
    found = entry_points(group=ENTRY_POINTS, name=command)
    return next(iter(found)).load() if found else None


def server_side(command: str) -> Any:
    """The server's module for ``command``, or a one-line CommandError saying how to install the server."""
    module = server_module(command)
    if module is None:
        raise CommandError(
            f"`procwire {command}` needs the procwire server, which is not installed here: install it beside "
            "procwire-client (in a procwire checkout: make install, or pip install ./clients/python .)"
        )
    return module


def cmd_token(args: argparse.Namespace) -> int:
    tokens = server_side("token")
    problem = tokens.name_problem(args.name)
    if problem:
        raise UsageError(problem)
    tokens.print_new_token(args.name, args.role)
    return 0


def cmd_serve(argv: list[str]) -> int:
    """``procwire serve ARGS...``: the server's module reads ``argv`` (and on success never returns)."""
    code: int = server_side("serve").main(argv)
    return code
