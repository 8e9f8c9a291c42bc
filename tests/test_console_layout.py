"""The console's layout in a real browser: narrow screens, and the README's screenshots (at 1280
and at 420 px wide; ``CONSOLE_SCREENSHOTS=docs/screenshots`` saves them there)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.client import RpcClient
from tests.console_page import Console, clean_up, eventually, expect, needs_chromium
from tests.server import Server

pytestmark = needs_chromium
pytest_plugins = ["tests.console_fixtures"]

WIDE = {"width": 1280, "height": 760}
NARROW = {"width": 420, "height": 800}
VIEWS = ["run", "processes", "terminal"]
COLOURFUL = (
    r"""sh -c 'ls --color=always -F /usr /etc/apt; printf "\033[1;32mok\033[0m \033[33mwarn\033[0m\n"; """
    r"""ls /nonexistent'"""
)


@pytest.mark.parametrize("width", [420, 480])
def test_narrow_screens_keep_log_out_on_screen_and_nothing_wider_than_the_window(
    browser: Any, console_server: Server, width: int
) -> None:
    console = Console(browser, console_server.http, viewport={"width": width, "height": 800}).open()
    page = console.page
    try:
        console.log_in(console_server.token)
        for view in VIEWS:
            console.tab(view)
            logout = page.locator("#logout").bounding_box()
            assert logout["x"] >= 0 and logout["x"] + logout["width"] <= width, (view, logout)
            assert page.locator("header").bounding_box()["height"] < 50, view  # one line, not wrapped
            overflow = page.evaluate("document.documentElement.scrollWidth")
            assert overflow <= width, (view, overflow)
        console.running_terminal()
        console.type_in_terminal("echo narrow-$((2*2))")
        console.wait_for_line("narrow-4")
        page.click("#logout")
        expect(page.locator("#login")).to_be_visible()
    finally:
        console.close()
        clean_up(console_server)


def show_every_view(console: Console, folder: Path, suffix: str) -> None:
    """Each view with something in it, saved as console-<view><suffix>.png."""
    page = console.page
    console.tab("terminal")
    console.running_terminal()
    console.type_in_terminal("ls --color=auto -F /usr")
    console.wait_for_line(r".*\bshare/.*")
    page.click("#new-terminal")
    eventually(lambda: len(console.terminals()) == 2, "a second tab")
    console.running_terminal()
    console.type_in_terminal("printf '\\033[1;36mprocwire\\033[0m terminal %s\\n' $((6*7))")
    console.wait_for_line("procwire terminal 42")
    expect(page.locator("#sessions tbody tr")).to_have_count(3)
    page.screenshot(path=folder / f"console-terminal{suffix}.png")
    console.run(COLOURFUL)
    expect(page.locator("#current-state")).to_have_text("exit 2")
    page.screenshot(path=folder / f"console-run{suffix}.png")
    console.tab("processes")
    expect(page.locator("#processes tbody tr")).to_have_count(5)
    page.screenshot(path=folder / f"console-processes{suffix}.png")


@pytest.mark.parametrize(("viewport", "suffix"), [(WIDE, ""), (NARROW, "-narrow")])
def test_screenshots_of_every_view(
    browser: Any, console_server: Server, screenshots: Path, viewport: dict[str, int], suffix: str
) -> None:
    with RpcClient(console_server.url, console_server.token) as cli:  # a kept session from elsewhere, and a job
        pty = {"rows": 24, "cols": 80}
        cli.call("start", argv=["bash"], pty=pty, binary=True, on_disconnect="keep", name="deploy")
        cli.call("start", argv=["sleep", "600"], on_disconnect="keep", name="nightly")
    console = Console(browser, console_server.http, viewport=viewport).open()
    try:
        console.log_in(console_server.token)
        show_every_view(console, screenshots, suffix)
    finally:
        console.close()
        clean_up(console_server)
