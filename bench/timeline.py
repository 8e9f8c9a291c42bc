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
    missing = []
    for owner, name, before, after in probes:
        if hasattr(owner, name):
            _probe(owner, name, before, after)
        else:
            missing.append(f"{owner.__name__}.{name}")
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
        return STEPS.get((self.start, self.end), f"{self.start} -> {self.end}")


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
