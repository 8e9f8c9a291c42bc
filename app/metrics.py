"""Prometheus metrics, served at ``/metrics``.

With one worker the default registry is enough.  With several, gunicorn's
master sets ``PROMETHEUS_MULTIPROC_DIR`` before forking (gunicorn.conf.py),
every worker writes its samples there, and ``/metrics`` sums them.
"""

from __future__ import annotations

import os

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
MESSAGES_IN = MESSAGES.labels("in")
MESSAGES_OUT = MESSAGES.labels("out")
OUTPUT_BY_STREAM = {stream: OUTPUT_BYTES.labels(stream) for stream in ("stdout", "stderr")}


def exit_reason(status: dict) -> str:
    if status["timed_out"]:
        return "timed_out"
    return "signaled" if status["signal"] else "exited"


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    registry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST
