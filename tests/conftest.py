from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

import procwire_client
from tests.client import RpcClient
from tests.flask_app import build_app, settings_for
from tests.redis_server import RedisServer
from tests.server import Server, children_of, wait_until

# The client suites' fixtures (loop, kind, new_client, any_client): registered here, before any
# test module imports the harness, so that pytest rewrites its assertions.
pytest_plugins = ["tests.client_kinds"]


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """One real service for the whole session; tests needing other settings start their own."""
    running = Server(env={"PROCWIRE_KILL_GRACE": "1", "PROCWIRE_MAX_STDIN_CHUNK": "65536"}).start()
    try:
        yield running
        worker = running.worker_pids()[0]
        if not wait_until(lambda: children_of(worker) == []):
            pytest.fail(f"processes left behind by the tests: {children_of(worker)}")
    finally:
        running.stop()


@pytest.fixture
def lib(server: Server) -> Iterator[procwire_client.Client]:
    """A connected client of the library under test (procwire_client)."""
    with procwire_client.Client(server.url, server.token) as connected:
        yield connected


@pytest.fixture
def rpc(server: Server) -> Iterator[RpcClient]:
    """A JSON-RPC connection to the session's server (tests/client.py)."""
    with RpcClient(server.url, server.token) as connected:
        yield connected


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    """procwire's Flask app, in-process, from explicit settings (tests/flask_app.py): the admin
    token ``test-token``, a STATE_DIR of its own, no audit log.  A module overrides it for others."""
    return build_app(settings_for(tmp_path / "state"))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Flask's test client of ``app``: plain HTTP, no port, no worker."""
    return app.test_client()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A real, empty redis-server for one test module (tests/redis_server.py).
    A test that stops or freezes it runs it again before it ends."""
    with RedisServer() as running:
        yield running
