"""Redis writes that never slow their caller: queued, then pipelined by one greenlet.

Records, answers and mirrored output all go through here, in order, so an
``exit`` written after a process's last chunk is applied after it.  Output
counts against a byte budget: past it a chunk is dropped (a remote reader
sees the jump in ``offset``) rather than making the pump wait.  When Redis
fails, what was queued is dropped and ``failed`` is set: the membership
loop writes everything again once Redis answers.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import gevent
from gevent.event import Event
from redis import Redis, RedisError

log = logging.getLogger(__name__)

Command = tuple[Any, ...]
BATCH = 256  # commands per pipeline round trip
DRAIN_POLL = 0.01  # seconds
LINGER = 0.01  # seconds a record may wait for more to send in the same round trip
MAX_COMMANDS = 100_000  # queued commands beyond this are dropped, like output past the budget


class Writer:
    def __init__(self, redis: Redis, budget_bytes: int) -> None:
        self._redis = redis
        self._budget = budget_bytes
        self._queue: deque[tuple[Command, int]] = deque()
        self._queued_bytes = 0
        self._work = Event()
        self._urgent = Event()  # something queued must not wait for company
        self.failed = False
        self.dropped_bytes = 0
        self._sending = False
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def put(self, *command: Any, size: int = 0, urgent: bool = False) -> bool:
        """Queue a command; ``size`` > 0 marks output, dropped when over budget.
        Output and requests are ``urgent``: someone waits for them.  Records
        may wait ``LINGER`` to share a round trip with what follows them."""
        if (size and self._queued_bytes + size > self._budget) or len(self._queue) >= MAX_COMMANDS:
            self.dropped_bytes += size
            return False
        self._queue.append((command, size))
        self._queued_bytes += size
        if urgent:
            self._urgent.set()
        self._work.set()
        return True

    def drain(self, timeout: float) -> bool:
        """Wait (bounded) until everything queued was sent."""
        deadline = time.monotonic() + timeout
        while (self._queue or self._sending) and time.monotonic() < deadline:
            gevent.sleep(DRAIN_POLL)
        return not (self._queue or self._sending)

    def _run(self) -> None:
        while True:
            self._work.wait()
            self._urgent.wait(LINGER)  # at once if something urgent is queued
            batch = self._take_batch()
            if not self._queue:
                self._work.clear()
                self._urgent.clear()
            if not batch:
                continue
            self._sending = True
            try:
                pipeline = self._redis.pipeline(transaction=False)
                for command in batch:
                    pipeline.execute_command(*command)
                pipeline.execute(raise_on_error=False)
            except RedisError as error:
                self._fail(error)
            except Exception as error:  # a command Redis could not be sent: drop it all, write again later
                log.exception("cluster: a write could not be encoded")
                self._fail(error)
            finally:
                self._sending = False

    def _take_batch(self) -> list[Command]:
        batch: list[Command] = []
        while self._queue and len(batch) < BATCH:
            command, size = self._queue.popleft()
            self._queued_bytes -= size
            batch.append(command)
        return batch

    def _fail(self, error: Exception) -> None:
        """Redis is gone: drop what waits; the membership loop writes it all again later."""
        if not self.failed:
            log.warning("cluster: Redis writes failed (%s); will re-register when it is back", error)
        self.failed = True
        self.dropped_bytes += self._queued_bytes
        self._queue.clear()
        self._queued_bytes = 0
