"""Where the time of one sequential operation goes, phase by phase.

spawn and cycle are latency-bound: the worker idles about half of each
operation (waiting for the child, or for the client), so a CPU profile does
not say what makes an operation long.  This module times the critical path
inside the worker instead.  :func:`install` (run in the worker by
``bench/timeline_gunicorn.py``) wraps a few functions of the server with
probes that note ``(event, perf_counter_ns)``; :func:`dump` writes the
events when the worker exits; :func:`phases` turns them into the median
length of each step between two events, the client's turnaround included
(from the worker's last event of one operation to the first of the next).
A probe costs about a microsecond.
"""

from __future__ import annotations

import functools
import itertools
import json
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EVENTS: list[tuple[str, int]] = []

# What each step between two events is, for the report.
STEPS = {
    ("accepted", "app called"): "gunicorn reads and parses the HTTP request",
    ("app called", "handshake done"): "Flask hooks, token check, the 101 answer (app/edge/handshake.py)",
    ("handshake done", "hello sent"): "session set-up, `hello` notification",
    ("hello sent", "frame in"): "client: reads the 101, sends `start`",
    ("frame in", "fork"): "decode, validate, policy, pipes: up to the fork",
    ("fork", "forked"): "vfork + exec, until the parent resumes",
    ("forked", "answer sent"): "pidfd, pumps, registry, audit, `start` answer sent (the child runs meanwhile)",
    ("answer sent", "child reaped"): "the rest of the child's run: the worker waits",
    ("child reaped", "exit sent"): "reap, both pipes to end of file, `exit` notification sent",
    ("exit sent", "done"): "bookkeeping after the exit: registry, audit",
    ("done", "frame in"): "client: reads the exit, sends the next `start`",
    ("done", "close received"): "client: reads the exit, sends Close",
    ("close received", "session over"): "server's Close, session end: registry, audit, log line",
    ("session over", "accepted"): "client: reads the Close, closes, connects again",
}

# The cluster probes (install_cluster): a round trip from a connection on one
# worker (the reader) to a process on the other (the owner), through Redis.
# The events of both workers and the client are merged in time order; each
# name says where it happened.
CLUSTER_PATH = [
    "client: write sent",
    "reader: frame in",
    "reader: request queued",
    "reader: pipeline out",
    "owner: message in",
    "owner: stdin written",
    "owner: output read",
    "owner: pipeline out",
    "reader: stream entries in",
    "reader: output sent",
    "client: output in",
]
CLUSTER_STEPS = {
    ("client: write sent", "reader: frame in"): "the `write` notification reaches the reader's worker",
    ("reader: frame in", "reader: request queued"): "decode, checks, the remote `write` queued for Redis",
    ("reader: request queued", "reader: pipeline out"): "the writer greenlet picks it up",
    ("reader: pipeline out", "owner: message in"): "PUBLISH to Redis, Redis to the owner's subscription",
    ("reader: pipeline out", "reader: pipeline back"): "PUBLISH answered",
    ("owner: message in", "owner: stdin written"): "the owner serves the request: into cat's stdin",
    ("owner: stdin written", "owner: output read"): "cat echoes, the owner's pump reads it",
    ("owner: output read", "owner: pipeline out"): "mirror: XADD queued, the writer picks it up",
    ("owner: pipeline out", "reader: stream entries in"): "XADD to Redis, the reader's blocking XREAD returns",
    ("reader: stream entries in", "reader: output sent"): "the reader's worker sends the output",
    ("reader: output sent", "client: output in"): "the client reads it",
}


def install_cluster() -> list[str]:
    """Probes on the cluster's path (app/cluster): requests over pub/sub, the
    mirror's XADD, the reader's XREAD; ``frame in`` and the output sent to a
    connection.  Names get the worker's role (reader, owner) when merged."""
    from redis.client import Pipeline

    from app.cluster import bus, feed
    from app.edge import session, subscriber
    from app.processes import process, stdin

    probes = [
        (session.Session, "handle_frame", "frame in", None),
        (bus.Bus, "request", None, "request queued"),
        (bus.Bus, "_dispatch", "message in", None),
        (Pipeline, "execute", "pipeline out", "pipeline back"),
        (stdin.StdinFeeder, "_write_now", None, "stdin written"),
        (process.Process, "publish", "output read", None),
        (feed.Feed, "_deliver", "stream entries in", None),
        (subscriber.Subscriber, "output", None, "output sent"),
    ]
    missing = _install(probes)
    return missing


def _note(event: str) -> None:
    EVENTS.append((event, time.perf_counter_ns()))


def _probe(owner: Any, name: str, before: str | None = None, after: str | None = None) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def probed(*args: Any, **kwargs: Any) -> Any:
        if before:
            _note(before)
        try:
            return original(*args, **kwargs)
        finally:
            if after:
                _note(after)

    setattr(owner, name, probed)


def _probe_notify(session_class: Any) -> None:
    original = session_class.notify

    @functools.wraps(original)
    def notify(self: Any, method: str, params: Any) -> None:
        original(self, method, params)
        if method in ("hello", "exit"):
            _note(f"{method} sent")

    session_class.notify = notify


def _probe_close(link_class: Any, closed: type[BaseException]) -> None:
    original = link_class.receive

    @functools.wraps(original)
    def receive(self: Any) -> Any:
        try:
            return original(self)
        except closed:
            _note("close received")
            raise

    link_class.receive = receive


def install() -> list[str]:
    """Wrap the server's functions with probes; return those not found (a
    ``--procwire-rev`` older than these names).  Each is looked up when
    called, so wrapping after the app was loaded still takes effect."""
    import _posixsubprocess

    from flask import Flask
    from gunicorn.workers.ggevent import GeventWorker
    from simple_websocket import ConnectionClosed

    from app.edge import session, wire
    from app.processes import process, reaper

    probes = [
        (GeventWorker, "handle", "accepted", None),
        (Flask, "wsgi_app", "app called", None),
        (session.Session, "__init__", "handshake done", None),
        (session.Session, "handle_frame", "frame in", None),
        (_posixsubprocess, "fork_exec", "fork", "forked"),
        (session.Session, "_deliver", None, "answer sent"),
        (reaper.ChildWatch, "_reap_if_exited", "child reaped", None),
        (process.Process, "_finish", None, "done"),
        (session.Session, "run", None, "session over"),
    ]
    missing = _install(probes)
    _probe_notify(session.Session)
    _probe_close(wire.Link, ConnectionClosed)
    return missing


def dump(path: str, missing: list[str]) -> None:
    Path(path).write_text(json.dumps({"events": EVENTS, "missing": missing}))


@dataclass(frozen=True)
class Phase:
    start: str
    end: str
    median_us: float

    @property
    def what(self) -> str:
        pair = (self.start, self.end)
        return STEPS.get(pair) or CLUSTER_STEPS.get(pair) or f"{self.start} -> {self.end}"


def phases(events: list[tuple[str, int]], first: str) -> tuple[list[Phase], int]:
    """The median of each step of the operations that begin with ``first``
    (only those whose events came in the most common order), and how many
    operations that is.  The last step runs to the next operation's first event."""
    operations: list[list[tuple[str, int]]] = []
    for event in events:
        if event[0] == first or not operations:
            operations.append([])
        operations[-1].append(event)
    pairs = list(itertools.pairwise(operations))[len(operations) // 10 :]  # skip the warm-up
    if not pairs:
        return [], 0
    shape = Counter(tuple(name for name, _ in operation) for operation, _ in pairs).most_common(1)[0][0]
    steps: dict[int, list[int]] = {}
    kept = 0
    for operation, following in pairs:
        if tuple(name for name, _ in operation) != shape:
            continue
        kept += 1
        times = [at for _, at in operation] + [following[0][1]]
        for index in range(len(shape)):
            steps.setdefault(index, []).append(times[index + 1] - times[index])
    names = [*shape, first]
    result = [
        Phase(names[index], names[index + 1], statistics.median(lengths) / 1000) for index, lengths in steps.items()
    ]
    return result, kept


def path_phases(events: list[tuple[str, int]], path: list[str]) -> tuple[list[Phase], int]:
    """The median of each step along ``path`` when other events interleave
    (several processes, unrelated pipelines): in each operation (from one
    ``path[0]`` to the next) the first occurrence of each event of the path
    after the previous one; operations missing one are left out."""
    starts = [index for index, (name, _) in enumerate(events) if name == path[0]]
    bounds = list(itertools.pairwise([*starts, len(events)]))[len(starts) // 10 :]  # skip the warm-up
    steps: list[list[int]] = [[] for _ in path[1:]]
    kept = 0
    for begin, end in bounds:
        times = [events[begin][1]]
        position = begin + 1
        for wanted in path[1:]:
            while position < end and events[position][0] != wanted:
                position += 1
            if position >= end:
                break
            times.append(events[position][1])
            position += 1
        if len(times) != len(path):
            continue
        kept += 1
        for index in range(len(path) - 1):
            steps[index].append(times[index + 1] - times[index])
    if not kept:
        return [], 0
    return [
        Phase(path[index], path[index + 1], statistics.median(lengths) / 1000) for index, lengths in enumerate(steps)
    ], kept


def _install(probes: list[tuple[Any, str, str | None, str | None]]) -> list[str]:
    """Wrap each target that exists; name those that do not (an older tree)."""
    missing = []
    for owner, name, before, after in probes:
        if hasattr(owner, name):
            _probe(owner, name, before, after)
        else:
            missing.append(f"{owner.__name__}.{name}")
    return missing
