"""Sharing in the console, in a real browser (issue 15, item 1): the owner's Share button copies a
link; a view link opens a read-only terminal under a banner where keys do nothing; a control link
drives the process; a revoked link sends the page back to the login with a reason."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.client import RpcClient
from tests.console_page import VIEWPORT, Console, eventually, expect, needs_chromium
from tests.server import Server

pytestmark = needs_chromium
pytest_plugins = ["tests.console_fixtures"]

SIZE = {"rows": 20, "cols": 72}  # the shared shell's: a read-only page takes it


@dataclass
class Owner:
    """The owner's connection and a kept shell of theirs on a terminal (the console fixture ends it)."""

    client: RpcClient
    proc: int
    pid: int

    def type(self, line: str) -> None:
        self.client.call("write", proc=self.proc, data=line + "\r")

    def share(self, mode: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.client.call("share", proc=self.proc, mode=mode)
        return answer


@pytest.fixture
def owner(console_server: Server) -> Iterator[Owner]:
    with RpcClient(console_server.url, console_server.token) as client:
        started = client.call("start", argv=["bash", "--norc"], pty=SIZE, on_disconnect="keep", name="shared")
        shell = Owner(client, started["proc"], started["pid"])
        shell.type("PS1='$ '; echo ready-$((40+2))")
        yield shell


def viewer(browser: Any, console_server: Server, token: str) -> Console:
    """Another browser profile, opened at the console link of a share."""
    return Console(browser, console_server.http).open(f"/?share={token}")


def test_the_share_button_creates_and_copies_a_view_link(
    browser: Any, console: Console, console_server: Server, owner: Owner
) -> None:
    proc = owner.proc
    context = browser.new_context(viewport=VIEWPORT)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=console_server.http)
    page_of_owner = Console(browser, console_server.http, context=context).open()
    try:
        page = page_of_owner.page
        page_of_owner.log_in(console_server.token)
        page_of_owner.tab("processes")
        page_of_owner.row(proc).locator("button[data-action=share]").click()
        expect(page.locator("#share-dialog")).to_be_visible()
        expect(page.locator("#share-proc")).to_have_text(str(proc))
        page.click("#share-create")
        expect(page.locator("#share-copied")).to_have_text("Link copied.")
        link = page.locator("#share-link").input_value()
        assert page.evaluate("navigator.clipboard.readText()") == link
        token = parse_qs(urlsplit(link).query)["share"][0]
        assert link == f"{console_server.http}/?share={token}"
        assert page.locator("#share-cli").input_value().endswith(f"/ws?share={token}")
        expect(page.locator("#share-expiry")).to_contain_text(f"watch (read-only) proc {proc} until")
        page.click("#share-close")

        other = viewer(browser, console_server, token)  # the link works
        try:
            expect(other.page.locator("#share-banner")).to_contain_text(f"Read-only: proc {proc}")
        finally:
            other.close()
    finally:
        page_of_owner.close()
        context.close()


def test_a_view_link_shows_a_read_only_terminal_where_keys_do_nothing(
    browser: Any, console: Console, console_server: Server, owner: Owner, screenshots: Path
) -> None:
    proc = owner.proc
    share = owner.share("view")
    watching = viewer(browser, console_server, share["token"])
    try:
        page = watching.page
        watching.wait_up()
        banner = page.locator("#share-banner")
        expect(banner).to_have_text(f"Read-only: proc {proc} is shared with you to watch. Keys do nothing here.")
        for owner_only in ("nav", "#new-terminal", "#share-terminal", "#end-terminal", "#sessions-panel", "#upload"):
            expect(page.locator(owner_only)).to_be_hidden()
        assert "share=" not in page.url  # the secret left the address bar (it stays in this tab)
        watching.wait_for_line(r"ready-42")
        assert watching.terminal_size() == (SIZE["rows"], SIZE["cols"])  # the process's size, not the window's
        assert page.evaluate("procwireConsole.readOnly") is True

        owner.type("printf '\\033[1;32m%s\\033[0m\\n' \"deploy $((6*7)) done\"")
        watching.wait_for_line(r"deploy 42 done")
        page.locator(".term-pane:not([hidden]) .xterm").click()
        page.keyboard.type("echo typed-by-viewer")
        page.keyboard.press("Enter")
        owner.type("echo after-$((2+2))")
        watching.wait_for_line(r"after-4")
        assert "typed-by-viewer" not in watching.terminal_text()  # nothing reached the shell
        expect(page.locator("#terminal-status")).to_contain_text("shared with you, read-only")
        viewers = owner.client.call("find", pid=owner.pid)["viewers"]
        assert [v["mode"] for v in viewers if v["name"] == f"share:{share['id']}"] == ["view"]  # the owner sees it
        page.screenshot(path=screenshots / "console-shared-view.png")
    finally:
        watching.close()


def test_a_link_pasted_where_the_token_goes_opens_the_share(
    browser: Any, console: Console, console_server: Server, owner: Owner
) -> None:
    proc = owner.proc
    share = owner.share("view")
    console.page.fill("#token", share["url"])  # the server's ws:// link, as the CLI gets it
    console.page.click("#login-form button[type=submit]")
    console.wait_up()
    expect(console.page.locator("#share-banner")).to_contain_text(f"Read-only: proc {proc}")
    console.wait_for_line(r"ready-42")


def test_a_control_link_types_into_the_process(
    browser: Any, console: Console, console_server: Server, owner: Owner
) -> None:
    proc = owner.proc
    share = owner.share("control")
    driving = viewer(browser, console_server, share["token"])
    try:
        driving.wait_up()
        expect(driving.page.locator("#share-banner")).to_have_text(
            f"Shared with you: you control proc {proc}. Keys go to it."
        )
        driving.wait_for_line(r"ready-42")
        eventually(driving.terminal_focused, "the keyboard in the shared terminal")
        driving.type_in_terminal("echo driven-$((3*3))")
        driving.wait_for_line(r"driven-9")
        assert driving.page.evaluate("procwireConsole.readOnly") is False
    finally:
        driving.close()


def test_a_revoked_link_sends_the_page_back_to_the_login_with_a_reason(
    browser: Any, console: Console, console_server: Server, owner: Owner
) -> None:
    share = owner.share("view")
    watching = viewer(browser, console_server, share["token"])
    try:
        watching.wait_up()
        watching.wait_for_line(r"ready-42")
        owner.client.call("unshare", id=share["id"])
        expect(watching.page.locator("#login")).to_be_visible()
        expect(watching.page.locator("#login-error")).to_contain_text("refused this share link")
    finally:
        watching.close()
