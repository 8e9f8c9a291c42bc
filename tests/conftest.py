from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.client import RpcClient
from tests.server import Server


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """One real service for the whole session; tests needing other settings start their own."""
    running = Server(env={"PROCWIRE_KILL_GRACE": "1", "PROCWIRE_MAX_STDIN_CHUNK": "65536"}).start()
    yield running
    running.stop()


@pytest.fixture
def client(server: Server) -> Iterator[RpcClient]:
    with RpcClient(server.url, server.token) as connected:
        yield connected
