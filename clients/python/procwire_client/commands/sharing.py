"""``share`` and ``unshare``: one process lent to someone else, and taken back (``attach LINK`` uses the link)."""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

from procwire_client.commands.common import add_command, connect, note

DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def register(commands: Any, common: list[argparse.ArgumentParser]) -> None:
    share = add_command(
        commands,
        "share",
        common,
        "print a link to watch (or drive) one process",
        "Make a share link for one of your processes and print it.  Its holder connects with it\n"
        "(procwire attach LINK, or the console) and may only watch that process (--view, the default)\n"
        "or also type into it, resize and signal it (--control); nothing else on the server.\n"
        "The link expires (--expires, default 1h, at most 7d); unshare revokes it at once.",
        """
procwire share 7
procwire share 7 --control --expires 30m --single-use
""",
    )
    share.add_argument("proc", type=int, help="the process id (see ps)")
    modes = share.add_mutually_exclusive_group()
    modes.add_argument("--view", dest="mode", action="store_const", const="view", help="watch only (the default)")
    modes.add_argument("--control", dest="mode", action="store_const", const="control", help="watch and drive")
    share.add_argument("--expires", type=duration, help="how long the link lasts: 90s, 30m, 1h, 2d (default 1h)")
    share.add_argument("--single-use", action="store_true", help="the link opens one connection only")
    share.set_defaults(handler=cmd_share, mode="view")

    unshare = add_command(
        commands,
        "unshare",
        common,
        "revoke a share link, close its connections",
        "Revoke a share made by procwire share (its id is printed there): the link is refused on every\n"
        "server of the cluster, and the connections made with it are closed.",
        """
procwire unshare Jx3bQ0c1vM2a
""",
    )
    unshare.add_argument("id", help="the share's id")
    unshare.set_defaults(handler=cmd_unshare)


def duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``1h``, ``2d`` in seconds."""
    match = DURATION.match(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (say 90s, 30m, 1h or 2d)")
    return float(match.group(1)) * UNIT_SECONDS[match.group(2)]


def cmd_share(args: argparse.Namespace) -> int:
    with connect(args) as client:
        share = client.share(args.proc, mode=args.mode, expires_in=args.expires, single_use=args.single_use)
    until = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(share.expires_at))
    once = ", single use" if args.single_use else ""
    note(f"share {share.id}: {share.mode} of process {args.proc} until {until}{once}; procwire unshare {share.id}")
    print(share.url, flush=True)
    return 0


def cmd_unshare(args: argparse.Namespace) -> int:
    with connect(args) as client:
        client.unshare(args.id)
    return 0
