"""``login`` and ``logout``: the server's URL and token, kept here."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from procwire_client import Client, settings
from procwire_client.address import websocket_url
from procwire_client.commands.common import CommandError, UsageError, add_command, note


def register(commands: Any, common: list[argparse.ArgumentParser]) -> None:
    login = add_command(
        commands,
        "login",
        [],
        "check and remember a server's URL and token",
        "Check the token against the server, then keep the URL and token in\n"
        f"{_shown(settings.config_path())} (mode 0600), where every command finds them.\n"
        "The token comes from --token, from a ?token= in the URL, or from stdin (asked for without echo\n"
        "on a terminal).  PROCWIRE_URL, PROCWIRE_TOKEN and --url/--token still come first; the stored\n"
        "token is only sent to the stored server.",
        """
procwire login http://127.0.0.1:9999
procwire login https://procwire.example.com --token "$TOKEN"
procwire login 'http://127.0.0.1:9999/?token=...'     # the line make run prints
pass show procwire | procwire login https://procwire.example.com
""",
    )
    login.add_argument(
        "server", metavar="URL", help="the server: http(s)://host[:port][/prefix], ws(s)://..., host:port"
    )
    login.add_argument(
        "--token", default=argparse.SUPPRESS, help="the token (default: ?token= in URL, else read from stdin)"
    )
    login.set_defaults(handler=cmd_login)

    logout = add_command(
        commands,
        "logout",
        [],
        "forget the URL and token procwire login stored",
        f"Forget the login: remove {_shown(settings.config_path())}, where procwire login keeps\n"
        "the server's URL and token.",
        """
procwire logout
""",
    )
    logout.set_defaults(handler=cmd_logout)


def _shown(path: Any) -> str:
    home = os.path.expanduser("~")
    text = str(path)
    return "~" + text[len(home) :] if home != "/" and text.startswith(home + "/") else text


def cmd_login(args: argparse.Namespace) -> int:
    url, token_in_url = websocket_url(args.server)
    token = getattr(args, "token", None) or token_in_url or _read_token()
    with Client(url, token) as client:
        client.ping()
        identity = client.hello.get("identity") or {}
    try:
        path = settings.save(settings.Login(url, token))
    except OSError as error:
        raise CommandError(f"cannot keep the login in {settings.config_path()}: {error.strerror or error}") from None
    who = f" as {identity['name']} ({identity.get('role', '?')})" if identity.get("name") else ""
    note(f"logged in to {url}{who}; kept in {path}")
    return 0


def _read_token() -> str:
    """The token from stdin: asked for without echo on a terminal, else its first line."""
    if sys.stdin is not None and os.isatty(0):
        token = getpass.getpass("Token: ")
    else:
        token = sys.stdin.readline() if sys.stdin is not None else ""
    token = token.strip()
    if not token:
        raise UsageError("no token: pass --token, put ?token= in the URL, or give it on stdin")
    return token


def cmd_logout(args: argparse.Namespace) -> int:
    if settings.remove():
        note(f"logged out: {settings.config_path()} removed")
    else:
        note("not logged in")
    return 0
