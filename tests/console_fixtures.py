"""The fixtures of tests/test_console*.py (loaded there with ``pytest_plugins``): a browser per
module, a console page per test that cleans up after itself, and where screenshots go."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console_page import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, Console, clean_up, expect, playwright_api
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


@pytest.fixture
def console(browser: Any, server: Server) -> Iterator[Console]:
    opened = Console(browser, server.http).open()
    try:
        yield opened
    finally:
        try:
            opened.close()
        finally:
            clean_up(server)
