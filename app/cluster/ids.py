"""Cluster-wide ``proc`` ids, unique and never reused, without a round trip per start.

A node takes blocks of ids from one Redis counter and hands them out
alone, fetching the next block in the background when half of the current
one is used.  If Redis loses the counter, the next block starts from the
clock (unix seconds x 10,000): above every id handed out before, as long
as the cluster started fewer than 10,000 processes a second on average.
"""

from __future__ import annotations

import time
from collections import deque

import gevent
from redis import Redis, RedisError

from app.cluster import keys
from app.errors import ErrorCode, RpcError

BLOCK = 1000
IDS_PER_SECOND = 10_000

# KEYS[1]: the counter; ARGV[1]: the seed if it is missing; ARGV[2]: the block size.
TAKE_BLOCK = """
local top = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
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
            top = int(self._take_block(keys=[keys.IDS], args=[int(time.time()) * IDS_PER_SECOND, BLOCK]))
        except RedisError:
            return
        self._free.append(range(top - BLOCK + 1, top + 1))
        self._left += BLOCK
