"""``recordings``: the session recordings this token may see, and one recording's file."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from typing import Any

from procwire_client.commands.common import UsageError, add_command, open_api, write_all
from procwire_client.commands.listing import table

COPY_SIZE = 64 * 1024


def register(commands: Any, common: list[argparse.ArgumentParser]) -> None:
    recordings = add_command(
        commands,
        "recordings",
        common,
        "list or fetch session recordings",
        "List the session recordings of this token (an admin token: everybody's; GET /api/recordings),\n"
        "or fetch one (GET /api/recordings/ID): a terminal's as asciicast v2 (play it with\n"
        "`asciinema play FILE`), pipes' as timed JSON lines (docs/protocol.md#recording).",
        """
procwire recordings
procwire recordings list --json
procwire recordings get 20261202T161500Z-3-0a1b2c3d -o session.cast
procwire recordings get 20261202T161500Z-3-0a1b2c3d | asciinema play -
""",
    )
    recordings.add_argument("action", nargs="?", choices=("list", "get"), default="list")
    recordings.add_argument("id", nargs="?", help="the recording to fetch (get)")
    recordings.add_argument("-o", "--output", help="write the recording to this file (default: stdout)")
    recordings.add_argument("--json", action="store_true", help="list: print the server's answer as JSON")
    recordings.set_defaults(handler=cmd_recordings)


def cmd_recordings(args: argparse.Namespace) -> int:
    if args.action == "get":
        if not args.id:
            raise UsageError("procwire recordings get ID: which recording?")
        return _get(args)
    if args.id:
        raise UsageError("procwire recordings list takes no ID (procwire recordings get ID)")
    with open_api(args, "/api/recordings") as response:
        answer = json.load(response)
    if args.json:
        print(json.dumps(answer["recordings"], indent=2))
        return 0
    rows: list[tuple[str, ...]] = [("ID", "PROC", "OWNER", "FORMAT", "STATE", "BYTES", "STARTED", "COMMAND")]
    rows += [_row(meta) for meta in answer["recordings"]]
    table(rows)
    if answer.get("partial"):
        print("(partial: some nodes of the cluster did not answer)", file=sys.stderr)
    return 0


def _row(meta: dict[str, Any]) -> tuple[str, ...]:
    started = meta.get("started_at")
    shown = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, int | float) else "-"
    return (
        str(meta.get("id")),
        str(meta.get("proc")),
        str(meta.get("owner")),
        str(meta.get("format")),
        str(meta.get("state")),
        str(meta.get("bytes")),
        shown,
        str(meta.get("command") or "-"),
    )


def _get(args: argparse.Namespace) -> int:
    with open_api(args, f"/api/recordings/{urllib.parse.quote(args.id, safe='')}") as response:
        if args.output is None:
            while data := response.read(COPY_SIZE):
                write_all(sys.stdout.fileno(), data)
            return 0
        partial = args.output + ".part"
        with open(partial, "wb") as file:
            while data := response.read(COPY_SIZE):
                file.write(data)
        os.replace(partial, args.output)
    return 0
