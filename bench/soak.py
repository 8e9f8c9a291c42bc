"""Soak test: many clients start, stream, feed, signal and drop processes at random.

``python -m bench.soak`` (or ``make soak``) starts the real service (gunicorn,
one gevent worker, a free loopback port) and runs ``--clients`` clients (100)
for ``--minutes`` (10).  Each client connects, does a random series of things
(starts streaming processes, process trees, processes that ignore SIGTERM or
keep a pipe open after exiting; writes to ``cat`` and reads the echo; signals,
stops, waits for, runs; stalls without reading), then leaves in one of three
ways: a Close frame, a TCP reset, or a socket shut down without a Close frame,
usually with processes still running.  Then it connects again, until the time
is up.

At the end, once every client is gone, it reports what was done (starts,
exits, bytes, errors by kind) and the worker's RSS and descriptor count at the
start and at the end, and exits non-zero when it finds:

* a leftover process: any child of the worker, or any process the clients
  started (leaders and the grandchildren they reported with ``echo $!``) that
  still exists, recognised by pid *and* start time, so a reused pid is not
  mistaken for one;
* a zombie among the children of the worker or of the gunicorn master;
* descriptor growth in the worker beyond ``FD_SLACK``;
* a replaced worker, a client thread that did not finish, or an unexpected error
  (anything but the races a random client provokes on purpose: signalling a
  process that has just exited, waiting with a timeout, and so on).

Every wait is bounded; only loopback is used; only processes it started are
ever signalled.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import re
import resource
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websocket

from tests.server import Server, children_of

FD_SLACK = 8
KILL_GRACE = 1.0
DRAIN_TIMEOUT = 1.0
MAX_RUNNING = 6  # processes a client keeps running at once
ANSWER_TIMEOUT = 30.0
SETTLE_TIMEOUT = 30.0
SAMPLE_EVERY = 30.0

# Errors a random client provokes on purpose: the process exited (or was
# forgotten) between the client's last look and its request; a wait timed out.
EXPECTED_ERRORS = {-32002, -32005, -32006}

PID_LINE = re.compile(rb"pid:(\d+)")


# -- /proc --------------------------------------------------------------------------------


def stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # after the command name, which may hold spaces


def start_time(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None  # field 22 of stat(5)


def state(pid: int) -> str | None:
    fields = stat_fields(pid)
    return fields[0] if fields else None


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- shared tallies -----------------------------------------------------------------------


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    pids: dict[int, int] = field(default_factory=dict)  # pid -> start time, for every process we caused

    def add(self, name: str, amount: int = 1) -> None:
        with self.lock:
            self.counts[name] += amount

    def error(self, kind: str, detail: str, expected: bool) -> None:
        with self.lock:
            self.errors[kind] += 1
            if not expected and len(self.unexpected) < 20:
                self.unexpected.append(f"{kind}: {detail}"[:300])

    def track(self, pid: int) -> None:
        started = start_time(pid)
        if started is not None:
            with self.lock:
                self.pids[pid] = started


# -- one client -------------------------------------------------------------------------------

STREAM_SCRIPTS = [
    # (argv, params): output in text, base64 and binary modes, stderr too
    (["sh", "-c", 'i=0; while [ $i -lt 300 ]; do echo "soak line $i"; echo "err $i" >&2; i=$((i+1)); done'], {}),
    (["head", "-c", "262144", "/dev/urandom"], {"encoding": "base64"}),
    (["head", "-c", "524288", "/dev/urandom"], {"binary": True}),
    (["sh", "-c", "yes soak | head -c 1048576"], {}),
    (["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do echo tick $i; sleep 0.2; done"], {}),
    (["sh", "-c", "echo on a terminal; stty size; sleep 0.3"], {"pty": {"rows": 24, "cols": 80}}),
]
TREE = "sleep 60 & echo pid:$!; sleep 60 & echo pid:$!; wait"
STUBBORN = "trap '' TERM; sleep 60 & echo pid:$!; while :; do sleep 1; done"
HOLDS_PIPE = "sleep 60 & echo pid:$!; exit 0"  # exit comes after DRAIN_TIMEOUT, output_incomplete
CLOSES_STDOUT = "sleep 60 & echo pid:$! >&2; exec >&-; sleep 60"
SIGNALS = ["TERM", "INT", "HUP", "KILL", "USR1"]


class Closed(Exception):
    """The connection ended (as the client wanted, or not)."""


class SoakClient:
    def __init__(self, index: int, server: Server, tally: Tally, deadline: float, seed: int) -> None:
        self.index = index
        self.server = server
        self.tally = tally
        self.deadline = deadline
        self.rng = random.Random(seed * 1000 + index)
        self.ws: websocket.WebSocket | None = None
        self.ids = 0
        self.answers: dict[int, dict[str, Any]] = {}
        self.running: dict[int, str] = {}  # proc -> what it is
        self.cats: set[int] = set()
        self.finished = False

    # -- the loop --

    def run(self) -> None:
        try:
            while time.monotonic() < self.deadline:
                try:
                    self.session()
                except Closed as closed:
                    self.tally.error("connection lost", str(closed), expected=False)
                except (OSError, websocket.WebSocketException) as error:
                    self.tally.error(f"client {type(error).__name__}", str(error), expected=False)
                finally:
                    self._drop_socket()
        finally:
            self.finished = True

    def session(self) -> None:
        self.ws = websocket.create_connection(
            f"{self.server.url}?token={self.server.token}", timeout=ANSWER_TIMEOUT, skip_utf8_validation=True
        )
        self.tally.add("connections")
        self.answers.clear()
        self.running.clear()
        self.cats.clear()
        hello = json.loads(self.ws.recv())
        assert hello["method"] == "hello", hello
        for _ in range(self.rng.randint(3, 40)):
            if time.monotonic() >= self.deadline:
                break
            self.act()
            self.pump(self.rng.uniform(0, 0.3))
        self.leave()

    def act(self) -> None:
        actions = [
            (self.start_stream, 5),
            (self.start_cat, 3),
            (self.start_tree, 2),
            (self.write_cat, 6),
            (self.close_cat, 1),
            (self.signal, 3),
            (self.stop, 2),
            (self.wait, 2),
            (self.run_once, 2),
            (self.with_timeout, 1),
            (self.listing, 1),
            (self.stall, 1),
        ]
        action = self.rng.choices([a for a, _ in actions], [w for _, w in actions])[0]
        action()

    def leave(self) -> None:
        """Close frame, TCP reset, or a socket shut down without a Close frame."""
        assert self.ws is not None
        how = self.rng.choice(["close", "reset", "vanish"])
        self.tally.add(f"left by {how}")
        if self.running:
            self.tally.add("left with processes running")
        if how == "close":
            with contextlib.suppress(OSError, websocket.WebSocketException):
                self.ws.close(timeout=2)
        elif how == "reset":
            sock = self.ws.sock
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
        else:
            sock = self.ws.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self.ws = None

    def _drop_socket(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                self.ws.shutdown()
            self.ws = None

    # -- wire --

    def request(self, method: str, **params: Any) -> int:
        assert self.ws is not None
        self.ids += 1
        self.ws.send(json.dumps({"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params}))
        return self.ids

    def call(self, method: str, **params: Any) -> dict[str, Any] | None:
        """The result, or None after an error answer (counted)."""
        request_id = self.request(method, **params)
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while request_id not in self.answers:
            if time.monotonic() > deadline:
                raise Closed(f"no answer to {method} in {ANSWER_TIMEOUT} s")
            self.receive(deadline - time.monotonic())
        answer = self.answers.pop(request_id)
        if "error" in answer:
            code = answer["error"]["code"]
            self.tally.error(f"{method} {code}", answer["error"]["message"], expected=code in EXPECTED_ERRORS)
            return None
        return answer["result"]

    def pump(self, seconds: float) -> None:
        """Read whatever arrives for ``seconds``."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.receive(left)

    def receive(self, timeout: float) -> None:
        assert self.ws is not None
        self.ws.settimeout(max(timeout, 0.001))
        try:
            opcode, data = self.ws.recv_data()
        except websocket.WebSocketTimeoutException:
            return
        except websocket.WebSocketConnectionClosedException as error:
            raise Closed(f"connection closed: {error}") from None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
            raise Closed(f"Close frame {code} {data[2:]!r}")
        if opcode == websocket.ABNF.OPCODE_BINARY:
            self.tally.add("output bytes", len(data) - 5)
            return
        message = json.loads(data)
        if isinstance(message, dict) and "id" in message:
            if isinstance(message["id"], int):
                self.answers[message["id"]] = message
            else:  # a refused binary stdin frame: its process may have exited meanwhile
                code = message.get("error", {}).get("code")
                self.tally.error(f"binary stdin {code}", json.dumps(message), expected=code in EXPECTED_ERRORS)
            return
        method, params = message.get("method"), message.get("params", {})
        if method == "output":
            chunk = base64.b64decode(params["data"]) if params.get("encoding") == "base64" else params["data"].encode()
            self.tally.add("output bytes", len(chunk))
            if self.running.get(params["proc"]) == "tree":  # only trees print pids; random bytes might match
                self.note_pids(chunk)
        elif method == "exit":
            self.tally.add("exits")
            if params.get("output_incomplete"):
                self.tally.add("exits with output_incomplete")
            if params.get("timed_out"):
                self.tally.add("exits timed out")
            self.running.pop(params["proc"], None)
            self.cats.discard(params["proc"])

    def note_pids(self, chunk: bytes) -> None:
        for match in PID_LINE.finditer(chunk):
            self.tally.track(int(match.group(1)))

    def started(self, result: dict[str, Any] | None, what: str) -> int | None:
        if result is None:
            return None
        self.tally.add("starts")
        self.tally.track(result["pid"])
        self.running[result["proc"]] = what
        return result["proc"]

    def some_running(self) -> int | None:
        return self.rng.choice(sorted(self.running)) if self.running else None

    # -- actions --

    def start_stream(self) -> None:
        if len(self.running) < MAX_RUNNING:
            argv, params = self.rng.choice(STREAM_SCRIPTS)
            self.started(self.call("start", argv=argv, **params), "stream")

    def start_cat(self) -> None:
        if len(self.running) < MAX_RUNNING:
            proc = self.started(self.call("start", argv=["cat"], binary=self.rng.random() < 0.3), "cat")
            if proc is not None:
                self.cats.add(proc)

    def start_tree(self) -> None:
        if len(self.running) < MAX_RUNNING:
            script = self.rng.choice([TREE, STUBBORN, HOLDS_PIPE, CLOSES_STDOUT])
            self.started(self.call("start", argv=["sh", "-c", script]), "tree")

    def write_cat(self) -> None:
        if not self.cats:
            return
        proc = self.rng.choice(sorted(self.cats))
        data = self.rng.randbytes(self.rng.choice([1, 100, 4096, 65536]))
        if self.rng.random() < 0.3:  # a binary stdin frame
            assert self.ws is not None
            self.ws.send_binary(struct.pack("!BI", 0, proc) + data)
        elif self.call("write", proc=proc, data=base64.b64encode(data).decode(), encoding="base64") is None:
            return
        self.tally.add("stdin bytes", len(data))

    def close_cat(self) -> None:
        if self.cats:
            proc = self.rng.choice(sorted(self.cats))
            self.cats.discard(proc)
            self.call("close_stdin", proc=proc)

    def signal(self) -> None:
        proc = self.some_running()
        if proc is not None:
            self.tally.add("signals")
            self.call("signal", proc=proc, signal=self.rng.choice(SIGNALS), group=self.rng.random() < 0.8)

    def stop(self) -> None:
        proc = self.some_running()
        if proc is not None:
            self.tally.add("stops")
            self.call("stop", proc=proc, grace=self.rng.choice([0, 0.2, 1]))

    def wait(self) -> None:
        proc = self.some_running()
        if proc is not None:
            self.call("wait", proc=proc, timeout=self.rng.choice([0, 0.1, 0.5]))

    def run_once(self) -> None:
        if len(self.running) < MAX_RUNNING:
            result = self.call("run", argv=["sh", "-c", "cat; echo done >&2"], input="x" * self.rng.randint(0, 9999))
            if result is not None:
                self.tally.add("starts")
                self.tally.add("exits")
                self.tally.add("output bytes", len(result["stdout"]) + len(result["stderr"]))

    def with_timeout(self) -> None:
        if len(self.running) < MAX_RUNNING:
            self.started(self.call("start", argv=["sleep", "30"], timeout=self.rng.choice([0.1, 0.5])), "timed")

    def listing(self) -> None:
        self.call(self.rng.choice(["list", "ping"]))

    def stall(self) -> None:
        """Read nothing for a while: the output backs up into the pipes."""
        time.sleep(self.rng.uniform(0.2, 1.5))


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    rss_kib: int
    fds: int
    children: int


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def settle(worker: int, timeout: float = SETTLE_TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not children_of(worker):
            return True
        time.sleep(0.2)
    return not children_of(worker)


def warm_up(server: Server) -> None:
    """First use allocates what a worker keeps for good (the reaper, the hub's watchers)."""
    ws = websocket.create_connection(f"{server.url}?token={server.token}", timeout=10)
    try:
        ws.recv()
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "run", "params": {"argv": ["sh", "-c", "true"]}}))
        while "id" not in json.loads(ws.recv()):
            pass
    finally:
        ws.close()


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Point this process's stdout and stderr at ``path`` while a child inherits them."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        yield
    finally:
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


def interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the clients run (default 10)")
    parser.add_argument("--clients", type=int, default=100, help="clients at once (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the clients' random choices")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    default_log = Path(tempfile.gettempdir()) / f"procwire-soak-{os.getpid()}.log"
    parser.add_argument("--server-log", metavar="FILE", type=Path, default=default_log, help="the server's output")
    args = parser.parse_args(argv)

    # Stop cleanly (server stopped, processes gone) on Ctrl-C, kill, or a hang-up, even
    # when started in the background, where a shell leaves SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
    raise_fd_limit()
    env = {"PROCWIRE_KILL_GRACE": str(KILL_GRACE), "PROCWIRE_DRAIN_TIMEOUT": str(DRAIN_TIMEOUT)}
    print(f"procwire soak: {args.clients} clients for {args.minutes:g} min; server output in {args.server_log}")
    with output_to(args.server_log):
        server = Server(env=env, token="soak-" + os.urandom(8).hex()).start()
    tally = Tally()
    samples: list[Sample] = []
    problems: list[str] = []
    try:
        assert server.process is not None
        master = server.process.pid
        worker = server.worker_pids()[0]
        warm_up(server)
        settle(worker)
        time.sleep(1.5)  # a reaper sweep, closed sockets really closed
        before = Sample(0.0, rss_kib(worker), fd_count(worker), len(children_of(worker)))
        began = time.monotonic()
        deadline = began + args.minutes * 60
        clients = [SoakClient(i, server, tally, deadline, args.seed) for i in range(args.clients)]
        threads = [threading.Thread(target=c.run, name=f"soak-{c.index}", daemon=True) for c in clients]
        for thread in threads:
            thread.start()
        next_sample = began + SAMPLE_EVERY
        while time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            if time.monotonic() >= next_sample and server.worker_pids() == [worker]:
                at = time.monotonic() - began
                samples.append(Sample(at, rss_kib(worker), fd_count(worker), len(children_of(worker))))
                next_sample += SAMPLE_EVERY
        for thread in threads:
            thread.join(timeout=max(0.0, deadline + 2 * ANSWER_TIMEOUT - time.monotonic()))
        hung = [c.index for c in clients if not c.finished]
        if hung:
            problems.append(f"{len(hung)} client threads did not finish: {hung[:10]}")
        elapsed = time.monotonic() - began

        if server.worker_pids() != [worker]:
            problems.append(f"the worker was replaced: {worker} -> {server.worker_pids()}")
        settle(worker)
        time.sleep(1.5)  # the reaper's sweep runs every second
        left = children_of(worker)
        if left:
            problems.append(f"{len(left)} children of the worker left: {[(pid, state(pid)) for pid in left][:20]}")
        leftovers = [pid for pid, started in tally.pids.items() if start_time(pid) == started]
        if leftovers:
            problems.append(
                f"{len(leftovers)} started processes still exist: {[(p, state(p)) for p in leftovers][:20]}"
            )
        zombies = [pid for pid in children_of(worker) + children_of(master) if state(pid) == "Z"]
        if zombies:
            problems.append(f"zombies: {zombies[:20]}")
        after = Sample(elapsed, rss_kib(worker), fd_count(worker), len(children_of(worker)))
        if after.fds > before.fds + FD_SLACK:
            problems.append(f"worker descriptors grew from {before.fds} to {after.fds} (allowed: +{FD_SLACK})")
        if tally.unexpected:
            problems.append(f"{len(tally.unexpected)}+ unexpected errors, first: {tally.unexpected[0]}")
        report = build_report(args, tally, before, after, samples, problems, len(leftovers), len(zombies))
        print(format_report(report))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    except KeyboardInterrupt as stop:
        print(f"interrupted ({stop}): stopping the server", file=sys.stderr)
        problems.append("interrupted")
    finally:
        server.stop()
        for pid, started in list(tally.pids.items()):  # never signal a pid that is no longer ours
            if pid > 1 and pid != os.getpid() and start_time(pid) == started:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
    return 1 if problems else 0


def build_report(
    args: argparse.Namespace,
    tally: Tally,
    before: Sample,
    after: Sample,
    samples: list[Sample],
    problems: list[str],
    leftovers: int,
    zombies: int,
) -> dict[str, Any]:
    return {
        "clients": args.clients,
        "minutes": args.minutes,
        "seed": args.seed,
        "elapsed_seconds": round(after.at, 1),
        "counts": dict(sorted(tally.counts.items())),
        "errors": dict(sorted(tally.errors.items())),
        "unexpected_errors": tally.unexpected,
        "tracked_pids": len(tally.pids),
        "worker_start": {"rss_kib": before.rss_kib, "fds": before.fds, "children": before.children},
        "worker_end": {"rss_kib": after.rss_kib, "fds": after.fds, "children": after.children},
        "worker_peak": {  # of the samples taken while the clients ran, and the end
            "rss_kib": max(s.rss_kib for s in [*samples, after]),
            "fds": max(s.fds for s in [*samples, after]),
            "children": max(s.children for s in [*samples, after]),
        },
        "samples": [{"at": round(s.at), "rss_kib": s.rss_kib, "fds": s.fds, "children": s.children} for s in samples],
        "leftover_processes": leftovers,
        "zombies": zombies,
        "problems": problems,
        "result": "FAIL" if problems else "PASS",
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"procwire soak: {report['clients']} clients for {report['minutes']:g} min "
        f"(seed {report['seed']}), {report['elapsed_seconds']} s",
        "",
        "done:",
        *(f"  {name:32} {value:>14,}" for name, value in report["counts"].items()),
        "errors (answers and client-side failures, by kind):",
        *(f"  {name:32} {value:>14,}" for name, value in report["errors"].items()),
        f"  {'unexpected':32} {len(report['unexpected_errors']):>14,}",
        "worker:                               start          peak           end",
        *(
            f"  {label:32} {report['worker_start'][key]:>8,} {report['worker_peak'][key]:>13,} "
            f"{report['worker_end'][key]:>13,}"
            for label, key in [("RSS (KiB)", "rss_kib"), ("open descriptors", "fds"), ("children", "children")]
        ),
        "worker RSS (MiB) every sample: " + " ".join(f"{sample['rss_kib'] / 1024:.0f}" for sample in report["samples"]),
        f"processes tracked (leaders and grandchildren): {report['tracked_pids']:,}",
        f"leftover processes: {report['leftover_processes']}   zombies: {report['zombies']}",
        *(f"PROBLEM: {problem}" for problem in report["problems"]),
        f"result: {report['result']}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
