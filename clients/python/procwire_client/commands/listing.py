"""``ps`` and ``clients``: what runs on the server, and who is connected."""

from __future__ import annotations

import argparse
import fnmatch
import json
import shlex
import time
from collections.abc import Sequence
from typing import Any

from procwire_client import ExitStatus
from procwire_client.commands.common import add_command, connect, open_api


def register(commands: Any, common: list[argparse.ArgumentParser]) -> None:
    ps = add_command(
        commands,
        "ps",
        common,
        "list the processes of this token",
        "List the processes of this token (an admin token: everybody's, with their OWNER), running\n"
        "and exited ones the server still remembers, with the command as it was typed.",
        """
procwire ps
procwire ps --running
procwire ps --name 'build-*'
procwire ps --owner alice          # admin tokens: alice's processes
procwire ps --json | jq '.[] | select(.state == "running") | .proc'
""",
    )
    ps.add_argument("--running", action="store_true", help="only processes still running")
    ps.add_argument("--name", help="only processes with this name (shell-style wildcards allowed)")
    ps.add_argument("--owner", help="only the processes of this token name (admin tokens see every owner)")
    ps.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    ps.set_defaults(handler=cmd_ps)

    clients = add_command(
        commands,
        "clients",
        common,
        "list the server's connections (admin tokens)",
        "List the server's WebSocket connections and the processes each started (GET /api/clients;\n"
        "admin tokens only).",
        """
procwire clients
procwire clients --json
""",
    )
    clients.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    clients.set_defaults(handler=cmd_clients)


# -- ps ----------------------------------------------------------------------------------------


def cmd_ps(args: argparse.Namespace) -> int:
    with connect(args) as client:
        answer = client.call("list")
        admin = (client.hello.get("identity") or {}).get("role") == "admin"
    processes = [info for info in answer["processes"] if _wanted(info, args)]
    if args.json:
        print(json.dumps(processes, indent=2))
        return 0
    header = ("PROC", "PID", "STATE", "EXIT", "STARTED", "FLAGS", "NODE", "NAME", "COMMAND")
    rows = [(*header[:7], *(("OWNER",) if admin else ()), *header[7:])]
    rows += [_row(info, admin) for info in processes]
    table(rows)
    return 0


def _wanted(info: dict[str, Any], args: argparse.Namespace) -> bool:
    if args.running and info.get("state") != "running":
        return False
    if args.name is not None and not fnmatch.fnmatchcase(info.get("name") or "", args.name):
        return False
    return args.owner is None or info.get("owner") == args.owner


def _row(info: dict[str, Any], admin: bool) -> tuple[str, ...]:
    status = ExitStatus.from_json(info["exit"]) if info.get("exit") else None
    return (
        str(info.get("proc")),
        str(info.get("pid")),
        str(info.get("state")),
        _exit_column(status),
        _time(info.get("started_at")),
        _flags(info),
        info.get("node") or "-",
        *((info.get("owner") or "-",) if admin else ()),
        info.get("name") or "-",
        command_line(info),
    )


def command_line(info: dict[str, Any]) -> str:
    """The command as the user typed it (the server's ``command``; from ``argv`` for servers without it)."""
    command = info.get("command")
    return command if isinstance(command, str) and command else shlex.join(info.get("argv") or [])


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


# -- clients -----------------------------------------------------------------------------------


def cmd_clients(args: argparse.Namespace) -> int:
    with open_api(args, "/api/clients") as response:
        answer = json.load(response)
    if args.json:
        print(json.dumps(answer["clients"], indent=2))
        return 0
    rows = [("ID", "REMOTE", "CONNECTED", "PROCESSES")]
    for client in answer["clients"]:
        procs = ",".join(str(proc) for proc in client.get("processes") or []) or "-"
        rows.append((str(client.get("id")), str(client.get("remote_addr")), _time(client.get("connected_at")), procs))
    table(rows)
    return 0


def _time(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))


def table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
