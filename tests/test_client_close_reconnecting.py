"""close() while the client is reconnecting, for both Python clients (issue 13, item 3).

A ``reconnect=True`` client whose connection dropped sits in its reconnect
loop: either in a handshake that never completes (the proxy accepts the
connection and never answers) or between attempts that are refused.  A
close() then must return in a bound, leave no reader thread or task and no
socket behind, and make every later call fail with ProcwireConnectionError.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import procwire_client as pw
from tests.client_kinds import BOUND, CuttingProxy, LoopThread, connect
from tests.server import Server, wait_until

KINDS = ["sync", "async"]
# Patient enough that only close() can end the wait: a handshake held longer than any bound here,
# attempts until well after the test.
PATIENT = {"reconnect": pw.Reconnect(delay=0.05, max_delay=0.2, deadline=10 * BOUND), "connect_timeout": 10 * BOUND}


class GatedProxy(CuttingProxy):
    """A CuttingProxy whose gate decides what becomes of new connections: ``open``
    passes them on, ``hold`` accepts them and never answers, ``reset`` resets them."""

    def __init__(self, target_port: int) -> None:
        self.gate = "open"
        self.turned_away = 0  # connections held or reset
        super().__init__(target_port)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.gate == "open":
                self._forward(client)
                continue
            if self.gate == "hold":
                with self.lock:
                    self.sockets.append(client)  # closed by cut() or close()
            else:
                self.reset(client)
            self.turned_away += 1


def open_sockets_to(port: int) -> list[str]:
    """This process's TCP sockets (by inode) connected to 127.0.0.1:``port`` whose descriptor is still open."""
    ours = set()
    for descriptor in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{descriptor}")
            if target.startswith("socket:["):
                ours.add(target[len("socket:[") : -1])
    found = []
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table, encoding="ascii") as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in ours:
                    found.append(fields[9])
    return found


def client_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name.startswith("procwire")}


async def other_tasks() -> set[str]:
    return {task.get_name() for task in asyncio.all_tasks() if task is not asyncio.current_task()}


@pytest.fixture
def proxy(server: Server) -> Iterator[GatedProxy]:
    gated = GatedProxy(server.port)
    yield gated
    gated.close()


def kill(server: Server, proc: int) -> None:
    with pw.Client(server.url, server.token) as other:
        other.kill(proc)
        other.wait(proc, BOUND)
        other.release(proc)


@pytest.mark.parametrize("gate", ["hold", "reset"])
@pytest.mark.parametrize("kind", KINDS)
def test_close_while_reconnecting_leaves_nothing_behind(
    server: Server, loop: LoopThread, proxy: GatedProxy, kind: str, gate: str
) -> None:
    threads, tasks = client_threads(), loop.run(other_tasks())
    client: Any = connect(kind, proxy.url, server.token, loop, **PATIENT)
    process = client.start(["sleep", "60"], on_disconnect="keep")
    try:
        proxy.gate = gate
        proxy.cut()
        assert wait_until(lambda: proxy.turned_away >= 2 if gate == "reset" else proxy.turned_away == 1, BOUND)
        closer = threading.Thread(target=client.close, name="test-closer", daemon=True)
        closer.start()
        closer.join(BOUND)
        assert not closer.is_alive(), "close() hangs while the client reconnects"
        assert client_threads() == threads and loop.run(other_tasks()) == tasks
        assert open_sockets_to(proxy.port) == []
        assert client.closed and client.reconnects == 0
        with pytest.raises(pw.ProcwireConnectionError):
            client.ping()
        with pytest.raises(pw.ProcwireConnectionError):
            process.wait(BOUND)
        attempts = proxy.turned_away
        assert not wait_until(lambda: proxy.turned_away > attempts, 0.5)  # and it tries no more
    finally:
        kill(server, process.proc)
