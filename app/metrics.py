"""Prometheus metrics, served at ``/metrics``.

With one worker the default registry is enough.  With several, gunicorn's
master sets ``PROMETHEUS_MULTIPROC_DIR`` before forking (gunicorn.conf.py),
every worker writes its samples there, and ``/metrics`` sums them.
"""

from __future__ import annotations

import os

from gevent import get_hub
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

CONNECTIONS_OPEN = Gauge("procwire_connections_open", "WebSocket connections open", multiprocess_mode="livesum")
CONNECTIONS = Counter("procwire_connections", "WebSocket connections accepted")
PROCESSES_RUNNING = Gauge("procwire_processes_running", "Processes not yet exited", multiprocess_mode="livesum")
PROCESSES_STARTED = Counter("procwire_processes_started", "Processes started")
EXITS = Counter("procwire_process_exits", "Processes exited, by reason", ["reason"])
OUTPUT_BYTES = Counter("procwire_output_bytes", "Bytes read from processes, by stream", ["stream"])
SPAWN_SECONDS = Histogram(
    "procwire_spawn_seconds",
    "Time to start a process (fork, exec, first answer from the child's exec)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
)
ERRORS = Counter("procwire_errors", "Error answers, by JSON-RPC code", ["code"])
MESSAGES = Counter("procwire_messages", "WebSocket messages, by direction", ["direction"])
PROGRAM_CONNECTIONS = Counter("procwire_program_connections", "Program connections accepted, by program", ["program"])
PROGRAM_EXITS = Counter("procwire_program_exits", "Program exits, by program and reason", ["program", "reason"])
PROGRAM_INPUT_BYTES = Counter("procwire_program_input_bytes", "Bytes written to programs' stdin", ["program"])
PROGRAM_OUTPUT_BYTES = Counter("procwire_program_output_bytes", "Bytes read from programs", ["program"])
FLUSH_INTERVAL = 1.0


class Tally:
    """A counter on the hot path (every message, every chunk of output).

    ``Counter.inc`` takes a lock, a gevent lock once patched: about 1.5 µs,
    three times per echoed keystroke.  A tally adds to a plain integer and
    hands the sum to its counter within ``FLUSH_INTERVAL`` (a one-shot timer
    of the hub's) or when ``/metrics`` is read, whichever comes first.
    """

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._pending = 0

    def add(self, amount: int = 1) -> None:
        self._pending += amount
        if not _flush.scheduled:
            _flush.schedule()

    def flush(self) -> None:
        pending, self._pending = self._pending, 0
        if pending:
            self._counter.inc(pending)


class _Flush:
    """The one timer that flushes every tally of this worker."""

    def __init__(self) -> None:
        self.scheduled = False
        self.tallies: list[Tally] = []

    def schedule(self) -> None:
        self.scheduled = True
        get_hub().loop.timer(FLUSH_INTERVAL).start(self.run)

    def run(self) -> None:
        self.scheduled = False
        for tally in self.tallies:
            tally.flush()


_flush = _Flush()
_labelled: dict[tuple[int, tuple[str, ...]], Tally] = {}


def tally(counter: Counter, *labels: str) -> Tally:
    """The :class:`Tally` of one labelled child of ``counter`` (a program's bytes), made once."""
    key = (id(counter), labels)
    if key not in _labelled:
        _labelled[key] = Tally(counter.labels(*labels))
        _flush.tallies.append(_labelled[key])
    return _labelled[key]


MESSAGES_IN = Tally(MESSAGES.labels("in"))
MESSAGES_OUT = Tally(MESSAGES.labels("out"))
OUTPUT_BY_STREAM = {stream: Tally(OUTPUT_BYTES.labels(stream)) for stream in ("stdout", "stderr")}
_flush.tallies += [MESSAGES_IN, MESSAGES_OUT, *OUTPUT_BY_STREAM.values()]


def exit_reason(status: dict) -> str:
    if status["timed_out"]:
        return "timed_out"
    return "signaled" if status["signal"] else "exited"


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    _flush.run()
    registry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST
