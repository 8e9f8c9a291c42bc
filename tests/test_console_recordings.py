"""The console's Recordings view in Chromium: a terminal's recording loaded and played by
asciinema-player (from node_modules, under the page's CSP), a pipes' recording shown as text."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.client import RpcClient
from tests.console_page import Console, eventually, expect, needs_chromium
from tests.server import Server

pytestmark = needs_chromium
pytest_plugins = ["tests.console_fixtures"]  # its fixtures: browser, console, screenshots

MARKER = "recorded-hello-42"


def recorded(server: Server, **params: object) -> str:
    with RpcClient(server.url, server.token) as client:
        started = client.call("start", record=True, **params)
        client.collect(started["proc"])
    return str(started["recording"])


def show(console: Console, recording: str) -> None:
    console.tab("recordings")
    row = console.page.locator(f"#recordings tbody tr[data-recording='{recording}']")
    expect(row).to_be_visible()
    row.locator("button[data-action=play]").click()


def test_a_terminal_recording_plays_in_asciinema_player(
    console: Console, console_server: Server, screenshots: Path
) -> None:
    script = f"printf '\\033[1;32m%s\\033[0m\\n' {MARKER}; for i in 1 2 3; do echo step $i; sleep 0.05; done"
    recording = recorded(console_server, argv=["sh", "-c", script], pty={"rows": 10, "cols": 60}, command="demo")
    console.log_in(console_server.token)
    show(console, recording)
    player = console.page.locator("#recording-player")
    expect(player.locator(".ap-player")).to_be_visible()
    eventually(lambda: MARKER in player.inner_text() and "step 3" in player.inner_text(), "the recording played")
    assert "demo" in console.page.locator("#recording-title").inner_text()
    console.page.screenshot(path=screenshots / "console-recording.png")


def test_a_pipes_recording_is_shown_as_timed_text(console: Console, console_server: Server) -> None:
    recording = recorded(console_server, argv=["sh", "-c", "echo out-line; echo err-line >&2"])
    console.log_in(console_server.token)
    show(console, recording)
    lines = console.page.locator("#recording-player .recording-lines")
    expect(lines).to_contain_text("stdout: out-line")
    expect(lines.locator(".stderr").first).to_contain_text("stderr: err-line")


@pytest.mark.parametrize("path", ["/vendor/asciinema-player.js", "/vendor/asciinema-player.css"])
def test_the_player_is_served_from_node_modules(console: Console, console_server: Server, path: str) -> None:
    assert console.context.request.get(console_server.http + path).status == 200
