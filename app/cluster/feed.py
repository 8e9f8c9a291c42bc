"""A remote process's output for one local sink: replay from offsets, then live, then the exit.

The owner mirrors the output into Redis Streams (app.cluster.mirror); the
feed reads them with one cursor per stream, so the replay and the live
part meet with no gap and no repeat.  The end marker of every stream
carries the exit status: once each stream has ended, the sink gets the exit.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

import gevent
import orjson
from redis import Redis, RedisError

from app.cluster import keys
from app.processes.history import Replay
from app.processes.sinks import OutputSink, Subscription
from app.processes.turns import BULK_CHUNK, bulk_turns

if TYPE_CHECKING:
    from app.cluster.remote import RemoteProcess

log = logging.getLogger(__name__)

BLOCK_MS = 1000
RETRY_INTERVAL = 0.5
Entry = tuple[bytes, dict[bytes, bytes]]


def entry_end(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


class Feed:
    def __init__(self, redis: Redis, process: RemoteProcess, sink: OutputSink) -> None:
        self._redis = redis
        self._process = process
        self._sink = sink
        self._cursors: dict[str, bytes] = {}
        self._ended: dict[str, dict[str, Any]] = {}
        self._greenlet: gevent.Greenlet | None = None
        self._done = False

    def replay(self, offsets: dict[str, int]) -> Subscription:
        """What is held from ``offsets`` on; the live part follows from there."""
        replays = {stream: self._replay_stream(stream, offsets.get(stream, 0)) for stream in self._process.streams}
        live = len(self._ended) < len(self._process.streams)
        if not live:
            self._process.status = next(iter(self._ended.values()))
        return Subscription(replays, frozenset(self._ended), live)

    def _replay_stream(self, stream: str, wanted: int) -> Replay:
        """One stream's held bytes from ``wanted`` on, up to the first gap (chunks
        the owner's mirror had to drop): from a gap on, the live part delivers
        each chunk with its own offset.  An offset beyond the end means the end,
        as for a local process."""
        wanted = min(wanted, self._process.offsets.get(stream, wanted))
        entries = cast(list[Entry], self._redis.xrange(keys.output(self._process.id, stream), min=f"({wanted}-0"))
        held = bytearray()
        begin = wanted
        truncated = False
        cursor = f"{wanted}-0".encode()
        for entry_id, fields in entries:
            end = entry_end(entry_id)
            if b"exit" in fields:
                self._ended[stream] = orjson.loads(fields[b"exit"])
                begin = begin if held else min(begin, end)
            else:
                data = fields[b"data"]
                start = end - len(data)
                if not held:
                    truncated = start > wanted
                    begin = max(start, wanted)
                elif start != begin + len(held):
                    break
                held += data[max(begin - start, 0) :]
            cursor = entry_id
        self._cursors[stream] = cursor
        return Replay(bytes(held), begin, truncated)

    def follow(self) -> None:
        """Deliver the live part, in its own greenlet."""
        if self._greenlet is None and len(self._ended) < len(self._process.streams):
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None and self._greenlet is not gevent.getcurrent():
            self._greenlet.kill(block=False)

    def end(self, status: dict[str, Any]) -> None:
        """The owner was lost and its end markers may never come: end here."""
        self.stop()
        if self._done:
            return
        for stream in self._process.streams:
            if stream not in self._ended:
                self._ended[stream] = status
                self._sink.end_of_stream(self._process, stream)
        self._finish()

    def _run(self) -> None:
        while len(self._ended) < len(self._process.streams):
            try:
                batches = self._read()
            except RedisError as error:
                log.debug("cluster: reading output of %s failed: %s", self._process.id, error)
                gevent.sleep(RETRY_INTERVAL)
                continue
            delivered = sum(self._deliver(key.decode().rsplit(":", 1)[-1], entries) for key, entries in batches)
            if delivered >= BULK_CHUNK:
                bulk_turns().wait()  # a remote bulk stream goes after local interactive output too
        self._finish()

    def _read(self) -> list[tuple[bytes, list[Entry]]]:
        waiting = {
            keys.output(self._process.id, stream): cursor
            for stream, cursor in self._cursors.items()
            if stream not in self._ended
        }
        return cast(list[tuple[bytes, list[Entry]]], self._redis.xread(waiting, block=BLOCK_MS) or [])  # type: ignore[arg-type]

    def _deliver(self, stream: str, entries: list[Entry]) -> int:
        """Hand the entries to the sink; the output bytes they held."""
        delivered = 0
        for entry_id, fields in entries:
            self._cursors[stream] = entry_id
            if b"exit" in fields:
                self._ended[stream] = orjson.loads(fields[b"exit"])
                self._sink.end_of_stream(self._process, stream)
                continue
            data = fields[b"data"]
            self._sink.output(self._process, stream, data, entry_end(entry_id) - len(data))
            delivered += len(data)
        return delivered

    def _finish(self) -> None:
        """Once: the sink gets one exit, however the feed ended."""
        if self._done:
            return
        self._done = True
        if self._process.status is None:
            self._process.status = next(iter(self._ended.values()))
        self._sink.exited(self._process)
