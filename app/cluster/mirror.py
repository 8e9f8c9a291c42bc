"""A process's output copied into Redis streams, for readers on other nodes.

The mirror is one more :class:`~app.processes.process.OutputSink` of the
process: each chunk becomes an entry ``<end offset>-0`` of the stream's
Redis Stream, queued on the :class:`~app.cluster.writer.Writer` (the pump
never waits), and the stream is trimmed to the process's history window
by ``MINID``.  At the exit an end marker ``<end>-1`` carrying the exit
status is added to each stream, so a remote reader learns of the exit
only after the last byte.  Kept processes are mirrored from their start;
others from the first remote ``attach``, beginning with what their
history still holds.
"""

from __future__ import annotations

from typing import Any

import orjson

from app.cluster import keys
from app.cluster.writer import Writer
from app.processes.process import Process
from app.processes.sinks import Source


def data_id(end: int) -> str:
    return f"{end}-0"


def end_marker(writer: Writer, proc_id: int, stream: str, end: int, status: dict[str, Any]) -> None:
    """The last entry of a stream: its end offset and the exit status."""
    writer.put("XADD", keys.output(proc_id, stream), f"{end}-1", "exit", orjson.dumps(status), urgent=True)


class Mirror:
    def __init__(self, writer: Writer, window: int) -> None:
        self._writer = writer
        self._window = window
        self._mirrored: set[int] = set()

    def start(self, process: Process) -> None:
        """Mirror from the oldest byte still held; once per process.  Nothing
        yields between copying the history and subscribing: no gap, no repeat."""
        if process.id in self._mirrored:
            return
        self._mirrored.add(process.id)
        for stream, history in process.history.items():
            held = history.read_from(0)
            if held.data:
                self.output(process, stream, held.data, held.offset)
        if process.subscribe(self, dict(process.offsets), counted=False).live:
            return
        self.exited(process)

    def restart(self, process: Process) -> None:
        """Mirror again after Redis lost its streams: the history goes back in
        (entries Redis still holds are refused by their ids, and skipped)."""
        self._mirrored.discard(process.id)
        self.start(process)

    def output(self, process: Source, stream: str, data: bytes, offset: int) -> None:
        end = offset + len(data)
        oldest = max(end - max(self._window, process.options.history_bytes), 0)
        key = keys.output(process.id, stream)
        command = ("XADD", key, "MINID", "=", data_id(oldest), data_id(end), "data", data)
        self._writer.put(*command, size=len(data), urgent=True)

    def end_of_stream(self, process: Source, stream: str) -> None:
        pass  # the end marker carries the exit status: written at the exit

    def exited(self, process: Source) -> None:
        self._mirrored.discard(process.id)
        for stream in process.streams:
            end_marker(self._writer, process.id, stream, process.offsets[stream], process.status or {})
