"""Server pings for every connection of this worker, from one greenlet.

simple-websocket can ping by itself, but then its reader waits in a
selector for every frame, which costs a few KiB per idle connection and
two system calls per message.  One greenlet here pings each connection
every ``interval`` seconds instead; a connection that has not answered the
previous ping by the next one is closed with 1008, as simple-websocket does.
"""

from __future__ import annotations

import os
from typing import Any

import gevent

CLOSE_POLICY_VIOLATION = 1008
YIELD_EVERY = 100  # pings sent between two yields, so a burst never holds the hub


class KeepAlive:
    def __init__(self) -> None:
        self._links: dict[int, Any] = {}
        self._started_in: int | None = None

    def watch(self, link: Any, interval: float) -> None:
        if not interval:
            return
        self._links[id(link)] = link
        if self._started_in != os.getpid():
            self._started_in = os.getpid()
            gevent.spawn(self._run, interval)

    def forget(self, link: Any) -> None:
        self._links.pop(id(link), None)

    def _run(self, interval: float) -> None:
        while True:
            gevent.sleep(interval)
            for count, link in enumerate(list(self._links.values()), 1):
                self._ping(link)
                if count % YIELD_EVERY == 0:
                    gevent.sleep(0)

    def _ping(self, link: Any) -> None:
        ws = link.ws
        if not ws.connected:
            return
        if not ws.pong_received:
            link.close(CLOSE_POLICY_VIOLATION, "Ping/Pong timeout")
            return
        ws.pong_received = False
        link.ping()


keepalive = KeepAlive()
