from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from procwire_client import Client
from procwire_client.testing import ProcwireServer, ServerPool
from tests.client import RpcClient
from tests.flask_app import build_app, settings_for
from tests.redis_server import RedisServer
from tests.server import Server, children_of, wait_until

# The client suites' fixtures (loop, kind, new_client, any_client): registered here, before any
# test module imports the harness, so that pytest rewrites its assertions.
pytest_plugins = ["tests.client_kinds"]


@pytest.fixture(scope="session")
def server(procwire_servers: ServerPool) -> Iterator[ProcwireServer]:
    """One real service for the whole session: the one the pytest plugin's ``procwire_server`` gives
    every test without a marker (procwire_client/pytest_plugin.py; its settings are pyproject.toml's
    ``procwire_settings``), stopped by the plugin at the end.  Tests needing other settings start their own."""
    running = procwire_servers.shared()
    yield running
    if running.running:
        worker = running.worker_pids()[0]
        if not wait_until(lambda: children_of(worker) == []):
            pytest.fail(f"processes left behind by the tests: {children_of(worker)}")


@pytest.fixture
def lib(procwire_client: Client) -> Client:
    """A connected client of the library under test: the plugin's ``procwire_client`` (on ``server``),
    so that what it leaves running is killed and named after each test."""
    return procwire_client


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
