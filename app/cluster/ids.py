"""Cluster-wide ``proc`` ids: unique, never reused, 32-bit, and no round trip per start.

Ids must fit the 32 bits of a binary frame's header.  A node takes blocks
of ids from one Redis counter and hands them out alone, fetching the next
block in the background when half of the current one is used.

The counter must never go back, even when Redis loses it (a restart
without persistence, an old snapshot).  Every node remembers the top of
the highest block it was given (its *mark*), keeps it in a small file of
its server (``STATE_DIR``, one per ``BIND``: it survives a restart of the
host) and pushes it at each heartbeat, so the counter is lifted to the
highest mark of every live node.  A node that finds the counter gone
seeds it with its mark and waits two heartbeats and a half before taking
a block, so that every live node has pushed its mark by then; a start
that needs an id meanwhile waits for that block.
What remains: the last blocks of a server that died while Redis lost its
data, and that never starts again, can be handed out once more
(docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
from collections import deque
from pathlib import Path

import gevent
from redis import Redis, RedisError
from redis.client import Pipeline

from app.cluster import keys
from app.errors import ErrorCode, RpcError

log = logging.getLogger(__name__)

BLOCK = 1000
LARGEST_ID = 2**32 - 1  # a binary frame's header holds 32 bits
JUST_SEEDED = -1
SEEDED_WAIT_BEATS = 2.5  # heartbeats to wait for every live node's mark after seeding the counter
REFILL_WAIT = 30.0  # seconds a start may wait for a refill under way (bounded by the seeded wait)

# KEYS[1]: the counter.  ARGV[1]: this node's mark, ARGV[2]: the block size.
TAKE_BLOCK = """
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1])
  return -1
end
local top = math.max(tonumber(current), tonumber(ARGV[1])) + tonumber(ARGV[2])
redis.call('SET', KEYS[1], top)
return top
"""

# KEYS[1]: the counter.  ARGV[1]: this node's mark.  A missing counter is left to TAKE_BLOCK.
PUSH_MARK = """
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
"""


class ProcIds:
    def __init__(self, redis: Redis, mark_file: Path, heartbeat: float) -> None:
        self._take_block = redis.register_script(TAKE_BLOCK)
        self._mark_file = mark_file
        self._seeded_wait = SEEDED_WAIT_BEATS * heartbeat
        self.mark = read_mark(mark_file)
        self._free: deque[range] = deque()
        self._left = 0
        self._refilling: gevent.Greenlet | None = None

    def next(self) -> int:
        """An id; refused with CLUSTER_UNAVAILABLE only when every reserved id
        is used up while Redis is unreachable."""
        if not self._left:
            self._refill_now()
        if not self._left:
            raise RpcError(ErrorCode.CLUSTER_UNAVAILABLE, "cluster unavailable: no process ids left, Redis is down")
        block = self._free[0]
        proc_id = block[0]
        if len(block) == 1:
            self._free.popleft()
        else:
            self._free[0] = block[1:]
        self._left -= 1
        if self._left < BLOCK // 2:
            self.refill_soon()
        return proc_id

    def _refill_now(self) -> None:
        """Wait for the refill under way (it may be waiting for the marks), or make one."""
        if self._refilling is not None:
            self._refilling.join(REFILL_WAIT)
        else:
            self._refill()

    def refill_soon(self) -> None:
        """Fetch the next block in the background (at start, and at half a block)."""
        if self._refilling is None:
            self._refilling = gevent.spawn(self._refill_in_background)

    def push_mark(self, pipeline: Pipeline) -> None:
        """Lift the counter to this node's mark (queued on the heartbeat's pipeline)."""
        pipeline.eval(PUSH_MARK, 1, keys.IDS, self.mark)

    def _refill_in_background(self) -> None:
        try:
            self._refill()
        finally:
            self._refilling = None

    def _refill(self) -> None:
        try:
            top = self._take()
            if top == JUST_SEEDED:
                log.warning("cluster: the id counter was gone; waiting for the other nodes' marks")
                gevent.sleep(self._seeded_wait)
                top = self._take()
        except RedisError:
            return
        if top == JUST_SEEDED:
            return  # gone again: the next attempt waits again
        if top > LARGEST_ID:
            log.error("cluster: process ids are used up (the counter is at %d)", top)
            return
        self._free.append(range(top - BLOCK + 1, top + 1))
        self._left += BLOCK
        self.mark = max(self.mark, top)
        gevent.get_hub().threadpool.apply(write_mark, (self._mark_file, self.mark))  # fsync: off the hub

    def _take(self) -> int:
        return int(self._take_block(keys=[keys.IDS], args=[self.mark, BLOCK]))


def mark_file(state_dir: str, bind: str) -> Path:
    """One file per server: two servers on one machine share nothing."""
    return Path(state_dir) / f"ids-{re.sub(r'[^A-Za-z0-9_.-]', '_', bind)}"


def read_mark(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def write_mark(path: Path, mark: int) -> None:
    """Keep the larger of the file's mark and ``mark`` (the server's workers
    share the file): a few bytes, once per block of ids."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            file.seek(0)
            with contextlib.suppress(ValueError):
                mark = max(mark, int(file.read().strip() or 0))
            file.seek(0)
            file.truncate()
            file.write(f"{mark}\n")
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        log.warning("cluster: cannot keep the id mark in %s: %s", path, error)
