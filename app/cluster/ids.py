"""Cluster-wide ``proc`` ids, unique and never reused, without a round trip per start.

A node takes blocks of ids from one Redis counter and hands them out
alone, fetching the next block in the background when half of the current
one is used.  A block never starts below the clock (unix milliseconds x
1,000), so when Redis loses the counter, or comes back from an old
snapshot, the next blocks are still above every id handed out before:
the counter only outruns the clock if the cluster takes more than one
block a millisecond.  Ids stay below 2**53, exact in JavaScript, until 2255.
"""

from __future__ import annotations

import time
from collections import deque

import gevent
from redis import Redis, RedisError

from app.cluster import keys
from app.errors import ErrorCode, RpcError

BLOCK = 1000
IDS_PER_MILLISECOND = 1_000

# KEYS[1]: the counter; ARGV[1]: the clock's floor; ARGV[2]: the block size.
TAKE_BLOCK = """
local top = math.max(tonumber(redis.call('GET', KEYS[1]) or 0), tonumber(ARGV[1]))
top = top + tonumber(ARGV[2])
redis.call('SET', KEYS[1], top)
return top
"""


class ProcIds:
    def __init__(self, redis: Redis) -> None:
        self._take_block = redis.register_script(TAKE_BLOCK)
        self._free: deque[range] = deque()
        self._left = 0
        self._refilling: gevent.Greenlet | None = None

    def next(self) -> int:
        """An id; refused with CLUSTER_UNAVAILABLE only when every reserved id
        is used up while Redis is unreachable."""
        if not self._left:
            self._refill()
        if not self._left:
            raise RpcError(
                ErrorCode.CLUSTER_UNAVAILABLE, "cluster unavailable: no process ids left until Redis is back"
            )
        block = self._free[0]
        proc_id = block[0]
        if len(block) == 1:
            self._free.popleft()
        else:
            self._free[0] = block[1:]
        self._left -= 1
        if self._left < BLOCK // 2 and self._refilling is None:
            self._refilling = gevent.spawn(self._refill_in_background)
        return proc_id

    def _refill_in_background(self) -> None:
        try:
            self._refill()
        finally:
            self._refilling = None

    def _refill(self) -> None:
        try:
            top = int(self._take_block(keys=[keys.IDS], args=[int(time.time() * 1000) * IDS_PER_MILLISECOND, BLOCK]))
        except RedisError:
            return
        self._free.append(range(top - BLOCK + 1, top + 1))
        self._left += BLOCK
