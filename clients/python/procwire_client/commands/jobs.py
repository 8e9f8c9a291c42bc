"""Job control over processes that outlive a command: ``logs``, ``wait``, ``stop``, ``release``, ``kill``."""

from __future__ import annotations

import argparse
from typing import Any

from procwire_client import Process
from procwire_client.commands.common import UsageError, add_command, connect, exit_code, note, write_all
from procwire_client.commands.running import copy_output


def register(commands: Any, common: list[argparse.ArgumentParser]) -> None:
    logs = add_command(
        commands,
        "logs",
        common,
        "print a process's output so far (-f: and follow it)",
        "Print what a process's history holds (a kept process keeps its last 1 MiB per stream), stdout to\n"
        "stdout and stderr to stderr, then stop at the current end; with -f go on with the live output\n"
        "until the process exits.  --since starts at a byte offset (ps --json shows each stream's end).",
        """
procwire logs 7
procwire logs -f 7
procwire logs 7 --since 1024
procwire logs 7 --since 1024,0     # stdout from byte 1024, stderr from byte 0
""",
    )
    _proc_argument(logs)
    logs.add_argument("-f", "--follow", action="store_true", help="follow the live output until the process exits")
    logs.add_argument("--since", metavar="OFFSET[,OFFSET]", help="start at this stdout byte offset (and stderr's)")
    logs.set_defaults(handler=cmd_logs)

    wait = add_command(
        commands,
        "wait",
        common,
        "wait for a process to end and exit with its status",
        "Wait until the process exits, then exit with its status as run does (128+N after signal N,\n"
        "124 when its --timeout stopped it).",
        """
proc=$(procwire run -d -- make); procwire wait "$proc"; echo "make exited $?"
""",
    )
    _proc_argument(wait)
    wait.set_defaults(handler=cmd_wait)

    stop = add_command(
        commands,
        "stop",
        common,
        "stop a process: TERM, then KILL after a grace period",
        "Send SIGNAL (default TERM) to the process group, then KILL after --grace seconds (default: the\n"
        "server's KILL_GRACE) if anything is left; returns once it has exited.",
        """
procwire stop 7
procwire stop 7 --signal INT --grace 10
""",
    )
    _proc_argument(stop)
    stop.add_argument("-s", "--signal", default="TERM", help="the first signal, a name or number (default TERM)")
    stop.add_argument("--grace", type=float, help="seconds before KILL (default: the server's KILL_GRACE)")
    stop.set_defaults(handler=cmd_stop)

    release = add_command(
        commands,
        "release",
        common,
        "forget an exited process on the server",
        "Forget an exited process: it leaves ps, and its output history is freed (a kept process is\n"
        "otherwise kept for an hour after its exit).",
        """
procwire release 7
""",
    )
    _proc_argument(release)
    release.set_defaults(handler=cmd_release)

    kill = add_command(
        commands,
        "kill",
        common,
        "send a signal to a process group (default TERM)",
        "Send a signal to the process and the processes it started (its process group).",
        """
procwire kill 7
procwire kill 7 --signal INT
procwire kill 7 -s 9
""",
    )
    _proc_argument(kill)
    kill.add_argument("-s", "--signal", default="TERM", help="signal name or number (default TERM)")
    kill.set_defaults(handler=cmd_kill)


def _proc_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("proc", type=int, help="the process id (see ps)")


def _signal(text: str) -> str | int:
    return int(text) if text.isdigit() else text


def _since(text: str | None) -> dict[str, int] | None:
    """``N`` (stdout, stderr from 0, as attach takes it) or ``N,M`` (stdout and stderr)."""
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) > 2 or not all(part.strip().isdigit() for part in parts):
        raise UsageError(f"--since {text}: expected a byte offset, or two (stdout,stderr)")
    offsets = [int(part) for part in parts]
    return {"stdout": offsets[0], "stderr": offsets[1] if len(offsets) == 2 else 0}


def cmd_logs(args: argparse.Namespace) -> int:
    since = _since(args.since)
    with connect(args) as client:
        process = client.attach(args.proc, offset=since, binary=True)
        if process.attachment is not None and process.attachment.truncated and since is not None:
            note(f"output of process {args.proc} before the kept history was dropped")
        if args.follow:
            copy_output(process)
        else:
            _copy_to_current_end(process)
    return 0


def _copy_to_current_end(process: Process) -> None:
    """The replay, up to the end offsets the attach answer gave (the output written since is not waited for).

    Counts what was printed (from ``replay_from``), not what arrived: the reader may be ahead."""
    attachment = process.attachment
    ends = attachment.offsets if attachment is not None else {}
    replay_from = attachment.extra.get("replay_from") if attachment is not None else None
    printed = dict(replay_from) if isinstance(replay_from, dict) else {}

    def reached() -> bool:
        return all(printed.get(stream, 0) >= end for stream, end in ends.items())

    if reached():
        return
    for stream, data in process:
        write_all(2 if stream == "stderr" else 1, data)
        printed[stream] = printed.get(stream, 0) + len(data)
        if reached():
            return


def cmd_wait(args: argparse.Namespace) -> int:
    with connect(args) as client:
        status = client.wait(args.proc)
    return exit_code(status)


def cmd_stop(args: argparse.Namespace) -> int:
    with connect(args) as client:
        client.stop(args.proc, _signal(args.signal), args.grace)
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    with connect(args) as client:
        client.release(args.proc)
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    with connect(args) as client:
        client.signal(args.proc, _signal(args.signal))
    return 0
