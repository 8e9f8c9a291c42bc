"""Which nodes are alive: this node's heartbeat, and the sweep of silent ones.

Every ``CLUSTER_HEARTBEAT`` seconds a node renews its ``alive`` key (with a
TTL of ``CLUSTER_NODE_TIMEOUT``) and its score in the node set.  Finding its
key gone (the first beat, or Redis restarted or lost its data) or its
writes failed, it writes all it knows again.  One node at a time (a
``SET NX`` lock) sweeps the nodes silent for longer than the timeout: their
processes get a lost exit in Redis, and every node hears of it on the
``lost`` channel.  A node also watches the nodes it waits on, in case
Redis lost the node set too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, cast

import gevent
import orjson
from redis import ConnectionError as RedisConnectionError
from redis import Redis, RedisError
from redis.client import Pipeline

from app.cluster import keys
from app.cluster.bus import Bus
from app.cluster.records import STREAMS
from app.cluster.remote import Record, lost_status
from app.cluster.writer import Writer

log = logging.getLogger(__name__)


class Membership:
    def __init__(
        self,
        redis: Redis,
        writer: Writer,
        bus: Bus,
        *,
        heartbeat: float,
        timeout: float,
        keep_seconds: float,
        register: Callable[[], None],
        on_beat: Callable[[Pipeline], None],
        refresh: Callable[[], None],
        watched: Callable[[], set[str]],
    ) -> None:
        self._redis = redis
        self._writer = writer
        self._bus = bus
        self._node = bus.node
        self._heartbeat = heartbeat
        self._timeout = timeout
        self._expiry = max(int(keep_seconds), 1)  # records of a node that is gone: KEEP_EXITED_SECONDS
        self._register = register
        self._on_beat = on_beat
        self._refresh = refresh
        self._watched = watched
        self._missing_since: dict[str, float] = {}
        self._stopped = False
        self.healthy = False
        self._healthy_since = 0.0  # monotonic: when Redis last became reachable from here

    def start(self) -> None:
        gevent.spawn(self._run)

    def _run(self) -> None:
        while not self._stopped:
            self._bus.listening.wait(self._heartbeat)  # register only once requests can reach us
            self.beat()
            gevent.sleep(self._heartbeat)

    def beat(self) -> None:
        try:
            self._renew()
            self._refresh()
            self._sweep()
            self._check_watched()
        except Exception as error:  # RedisError, or a bug: never let the heartbeat die
            if not isinstance(error, RedisError):
                log.exception("cluster: heartbeat failed")
            if self.healthy:
                log.warning("cluster: Redis is unreachable (%s); remote operations fail until it is back", error)
            self.healthy = False
            self._healthy_since = 0.0
            self._bus.fail_all("Redis is unreachable")

    def _renew(self) -> None:
        if not self._bus.listening.is_set():
            raise RedisConnectionError("not subscribed to this node's channel yet")
        pipeline = self._redis.pipeline(transaction=False)
        pipeline.set(keys.alive(self._node), b"1", px=int(self._timeout * 1000), get=True)
        pipeline.zadd(keys.NODES, {self._node: _now_ms()})
        self._on_beat(pipeline)
        asked = time.monotonic()
        previous = pipeline.execute()[0]
        if time.monotonic() - asked > self._heartbeat:
            self.healthy = False  # Redis hung: the other nodes could not beat either
        if previous is None or self._writer.failed or not self.healthy:
            self._writer.failed = False
            self._register()
            if not self.healthy:
                log.info("cluster: node %s registered", self._node)
        if not self.healthy:
            self._healthy_since = time.monotonic()
            self.healthy = True

    def _sweep(self) -> None:
        """Declare lost the nodes silent for longer than the timeout (one sweeper at a time).

        Not before this node has reached Redis for a whole timeout: after an
        outage every node's heartbeat looks old, and the live ones need that
        long to beat again."""
        if time.monotonic() - self._healthy_since < self._timeout:
            return
        if not self._redis.set(keys.JANITOR, self._node, nx=True, px=int(self._heartbeat * 1000)):
            return
        deadline = _now_ms() - int(self._timeout * 1000)
        silent = cast(list[bytes], self._redis.zrangebyscore(keys.NODES, "-inf", deadline))
        for node in silent:
            if node.decode() != self._node:
                self.declare_lost(node.decode())

    def _check_watched(self) -> None:
        """A node we wait on whose ``alive`` key stays gone for the timeout is lost,
        even if Redis lost the node set and the sweep cannot see it."""
        now = time.monotonic()
        for node in self._watched() | self._bus.waited_on():
            if node == self._node or self._redis.exists(keys.alive(node)):
                self._missing_since.pop(node, None)
            elif now - self._missing_since.setdefault(node, now) > self._timeout:
                self.declare_lost(node)
                self._missing_since.pop(node, None)

    def leave(self) -> None:
        """This node stops: no heartbeat to miss, nothing of it to sweep."""
        self._stopped = True
        proc_ids = [int(proc_id) for proc_id in self._redis.smembers(keys.node_procs(self._node))]
        self.mark_lost(self._node, proc_ids)  # none, unless an exit could not be written in time
        pipeline = self._redis.pipeline(transaction=False)
        for proc_id in proc_ids:
            pipeline.expire(keys.proc(proc_id), self._expiry)
            for stream in STREAMS:
                pipeline.expire(keys.output(proc_id, stream), self._expiry)
        self._forget_node(pipeline, self._node)
        pipeline.execute()

    def declare_lost(self, node: str) -> None:
        """Give each unfinished process of ``node`` a lost exit; tell every node."""
        log.warning("cluster: node %s is lost", node)
        self.mark_lost(node, [int(proc_id) for proc_id in self._redis.smembers(keys.node_procs(node))])
        pipeline = self._redis.pipeline(transaction=False)
        self._forget_node(pipeline, node)
        pipeline.publish(keys.LOST, node)
        pipeline.execute()

    @staticmethod
    def _forget_node(pipeline: Any, node: str) -> None:
        for key in (keys.node_procs(node), keys.node_running(node), keys.node_clients(node), keys.alive(node)):
            pipeline.delete(key)
        pipeline.zrem(keys.NODES, node)

    def mark_lost(self, node: str, proc_ids: list[int]) -> None:
        """The lost exit in each unfinished record, and as the end marker of each stream."""
        unfinished = [
            (proc_id, record)
            for proc_id, record in zip(proc_ids, self._records(proc_ids), strict=True)
            if record is not None and record.exit is None
        ]
        pipeline = self._redis.pipeline(transaction=False)
        for proc_id, record in unfinished:
            for stream in record.info["streams"]:
                pipeline.xrevrange(keys.output(proc_id, stream), count=1)
        last_entries = iter(pipeline.execute())
        pipeline = self._redis.pipeline(transaction=False)
        for proc_id, record in unfinished:
            status = orjson.dumps(lost_status(proc_id, record.info["pid"], node))
            pipeline.hset(keys.proc(proc_id), "exit", status)
            pipeline.expire(keys.proc(proc_id), self._expiry)
            for stream in record.info["streams"]:
                last = next(last_entries)
                end = max(record.offsets.get(stream, 0), int(last[0][0].split(b"-")[0]) if last else 0)
                pipeline.xadd(keys.output(proc_id, stream), {"exit": status}, id=f"{end}-1")
                pipeline.expire(keys.output(proc_id, stream), self._expiry)
        pipeline.execute(raise_on_error=False)

    def _records(self, proc_ids: list[int]) -> list[Record | None]:
        pipeline = self._redis.pipeline(transaction=False)
        for proc_id in proc_ids:
            pipeline.hgetall(keys.proc(proc_id))
        return [Record.from_hash(fields) for fields in pipeline.execute()]


def _now_ms() -> int:
    return int(time.time() * 1000)
