"""The fixtures of tests/test_console*.py (loaded there with ``pytest_plugins``): a server and a
browser per module, a console page per test that cleans up after itself, where screenshots go.

The server runs with an empty HOME: the terminals' shells read no ~/.bashrc of whoever runs the
tests (a slow one delays every prompt; one SIGKILLed in the middle of pyenv's rehash leaves a lock
that stalls every later shell on the machine for a minute)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console_page import (
    CHROMIUM,
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    Console,
    clean_up,
    console_env,
    expect,
    playwright_api,
)
from tests.server import Server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    expect.set_options(timeout=TIMEOUT_MS)
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where views are saved: docs/screenshots when asked, else a scratch folder (still exercised)."""
    wanted = os.environ.get("CONSOLE_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(env=console_env(tmp_path_factory.mktemp("home"))).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def console(browser: Any, console_server: Server) -> Iterator[Console]:
    opened = Console(browser, console_server.http).open()
    try:
        yield opened
    finally:
        try:
            opened.close()
        finally:
            clean_up(console_server)
