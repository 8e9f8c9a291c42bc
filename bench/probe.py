"""Echo probe for the fan-out workload, run as its own process.

It connects, starts ``cat`` (procwire) or opens ``/cat`` (websocketd), says
``ready`` on stdout, waits for ``go`` on stdin, then times one round trip
every ``--interval`` seconds until ``stop`` arrives (or ``--max-seconds``
pass), and prints one JSON line with the latencies' percentiles.

    python -m bench.probe --kind procwire --url ws://127.0.0.1:PORT/ws --header "Authorization: Bearer T"
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time

from bench.client import Conn, ProcwireClient
from bench.results import percentile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probe")
    parser.add_argument("--kind", choices=["procwire", "websocketd"], required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--line", default="hello")
    parser.add_argument("--interval", type=float, default=0.005)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--nice", type=int, default=0, help="scheduling priority change (negative needs root)")
    args = parser.parse_args(argv)
    if args.nice:
        try:
            os.nice(args.nice)
        except OSError as error:
            print(f"probe: cannot change priority: {error}", file=sys.stderr)

    line = (args.line + "\n").encode()
    if args.kind == "procwire":
        client = ProcwireClient(args.url, args.header, args.timeout)
        proc = client.start(["cat"])

        def round_trip() -> None:
            client.echo(proc, line)

    else:
        conn = Conn(args.url, args.header, args.timeout)

        def round_trip() -> None:
            conn.send_binary(line)  # websocketd --binary: the bytes go to cat as they are
            got = 0
            while got < len(line):
                got += len(conn.recv()[1])

    round_trip()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + args.max_seconds
    while time.monotonic() < deadline:
        if select.select([sys.stdin], [], [], 0)[0]:
            break  # "stop", or the suite went away
        started = time.perf_counter()
        try:
            round_trip()
        except Exception as error:
            errors.append(repr(error))
            break
        latencies.append(time.perf_counter() - started)
        time.sleep(args.interval)
    result = {
        "count": len(latencies),
        "p50_ms": percentile(latencies, 0.5) * 1e3 if latencies else None,
        "p90_ms": percentile(latencies, 0.9) * 1e3 if latencies else None,
        "p99_ms": percentile(latencies, 0.99) * 1e3 if latencies else None,
        "max_ms": max(latencies) * 1e3 if latencies else None,
        "errors": errors,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
