"""pytest fixtures for code built on procwire: a real server under your tests (docs/testing.md).

Registered by the client distribution's ``pytest11`` entry point, so installing ``procwire-client``
(beside the server, ``procwire``) is all it takes::

    def test_echo(procwire_client):
        assert procwire_client.run(["echo", "hi"]).stdout == b"hi\\n"

- ``procwire_server``: a :class:`~procwire_client.testing.ProcwireServer` (gunicorn, gevent worker,
  a free loopback port): ``.url``, ``.http``, ``.token`` (admin), ``.token_of(user)``.  Shared by
  every test asking for the same settings during the session, or the test's own with
  ``scope="function"``.  After each test, what it left running is killed and named in a
  :class:`~procwire_client.testing.LeftoverProcessWarning`.
- ``procwire_client``: a connected :class:`~procwire_client.Client` (the admin's).
- ``procwire_async_client``: an :class:`~procwire_client.testing.AsyncClientRunner`: a connected
  :class:`~procwire_client.AsyncClient` and the loop that runs the test's coroutines.
- ``procwire_servers``: the session's :class:`~procwire_client.testing.ServerPool`, for fixtures of
  a wider scope of your own.
- ``@pytest.mark.procwire_settings(KILL_GRACE=1, users={"alice": {...}}, scope="function")`` and the
  ini option ``procwire_settings`` (``KEY=VALUE`` lines, for every server).

A failing test's report carries what the servers alive during it logged meanwhile.  This is the only
module of procwire_client that imports pytest.
"""

from __future__ import annotations

import warnings
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from procwire_client.sync_client import Client
from procwire_client.testing import leftovers, logs
from procwire_client.testing.async_runner import AsyncClientRunner
from procwire_client.testing.launcher import ProcwireServer, ServerFailed, ServerNotInstalled
from procwire_client.testing.pool import ServerPool
from procwire_client.testing.server_settings import ServerSettings, SettingsError

MARKER = "procwire_settings"
SCOPES = ("session", "function")
LOG_MARKS = pytest.StashKey[dict[Path, int]]()  # per test: how long each server's log was at its start


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        MARKER,
        type="linelist",
        help="procwire settings for every server of the procwire_server fixture, one KEY=VALUE a line",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(KEY=value, ..., users={{name: policy}}, scope='session'|'function'): the procwire server "
        "this test gets from procwire_server (docs/testing.md)",
    )


def requested(item: pytest.Item) -> tuple[ServerSettings, str]:
    """The settings and the scope this test's markers ask for; the closest marker wins, key by key."""
    settings, scope = ServerSettings(), "session"
    for marker in reversed(list(item.iter_markers(MARKER))):
        if marker.args:
            raise SettingsError(f"{MARKER} takes keyword arguments only (KILL_GRACE=1), not {marker.args!r}")
        values: dict[str, Any] = dict(marker.kwargs)
        scope = values.pop("scope", scope)
        users = values.pop("users", None)
        settings = settings.merged(ServerSettings.of(values, users))
    if scope not in SCOPES:
        raise SettingsError(f"{MARKER}: scope={scope!r}, not one of {', '.join(SCOPES)}")
    return settings, scope


@pytest.fixture(scope="session")
def procwire_servers(pytestconfig: pytest.Config) -> Iterator[ServerPool]:
    """The session's servers, one per distinct settings; stopped at its end."""
    try:
        base = ServerSettings.from_lines(pytestconfig.getini(MARKER))
    except SettingsError as error:
        pytest.fail(str(error), pytrace=False)
    pool = ServerPool(base)
    yield pool
    pool.close()


@pytest.fixture
def procwire_server(request: pytest.FixtureRequest, procwire_servers: ServerPool) -> Iterator[ProcwireServer]:
    """A running procwire for this test; what the test leaves running is killed afterwards, and named."""
    try:
        settings, scope = requested(request.node)
        server = procwire_servers.shared(settings) if scope == "session" else procwire_servers.own(settings)
    except (SettingsError, ServerNotInstalled, ServerFailed) as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server
        left = leftovers.clear(server) if server.running else []
    finally:
        if scope == "function":
            server.stop()
    if left:
        warnings.warn(
            leftovers.LeftoverProcessWarning(
                f"{request.node.nodeid} left {len(left)} process(es) running on the procwire server, killed by "
                f"the procwire_server fixture: {'; '.join(left)}"
            ),
            stacklevel=1,
        )


@pytest.fixture
def procwire_client(procwire_server: ProcwireServer) -> Iterator[Client]:
    """A connected sync client with the admin token."""
    with Client(procwire_server.url, procwire_server.token) as client:
        yield client


@pytest.fixture
def procwire_async_client(procwire_server: ProcwireServer) -> Iterator[AsyncClientRunner]:
    """A connected asyncio client (``.client``) with the admin token; ``.run(scenario)`` awaits ``scenario(client)``."""
    runner = AsyncClientRunner(procwire_server.url, procwire_server.token)
    try:
        yield runner
    finally:
        runner.close()


# -- the servers' logs in a failing test's report ----------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[LOG_MARKS] = {path: logs.size(path) for path in logs.alive()}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if report.failed:
        marks = item.stash.get(LOG_MARKS, {})
        for path, title in logs.alive().items():
            text = logs.read(path, marks.get(path, 0))
            if text:
                report.sections.append((title, text))
    return report
