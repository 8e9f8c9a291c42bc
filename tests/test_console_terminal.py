"""The console's Terminal view in a real browser: a shell at once, focus, tabs, the session list,
keep or end with the tab, re-attach with the current screen, other clients' sessions, sizes."""

from __future__ import annotations

import re
from typing import Any

from tests.client import RpcClient
from tests.console_page import Console, eventually, expect, needs_chromium, png_pixels
from tests.server import Server

pytestmark = needs_chromium
pytest_plugins = ["tests.console_fixtures"]


def processes(console_server: Server) -> list[dict[str, Any]]:
    with RpcClient(console_server.url, console_server.token) as client:
        return list(client.call("list")["processes"])


def running_ptys(console_server: Server) -> list[dict[str, Any]]:
    return [info for info in processes(console_server) if info["pty"] and info["state"] == "running"]


def open_terminal_view(console: Console) -> int:
    console.tab("terminal")
    return console.running_terminal()


def test_the_terminal_view_opens_a_focused_shell_at_once(console: Console, console_server: Server) -> None:
    console.log_in(console_server.token)
    proc = open_terminal_view(console)  # nothing clicked but the view's tab
    eventually(console.terminal_focused, "the keyboard in the terminal")
    expect(console.page.locator(".term-pane:not([hidden]) .xterm.focus")).to_have_count(1)  # a solid cursor
    console.type_in_terminal("echo term-$((6*7))")
    console.wait_for_line("term-42")
    [info] = running_ptys(console_server)
    assert info["proc"] == proc and info["on_disconnect"] == "keep"
    expect(console.page.locator(f"#term-tabs .term-tab[data-proc='{proc}'].active")).to_be_visible()


def test_typing_right_after_a_reload_reaches_the_same_shell_which_shows_its_screen(
    console: Console, console_server: Server
) -> None:
    page = console.page
    console.log_in(console_server.token)
    proc = open_terminal_view(console)
    console.type_in_terminal("echo before-$((1+1))")
    console.wait_for_line("before-2")

    page.reload()
    console.type_in_terminal("echo after-$((2+3))")  # at once: not one key may be lost
    console.wait_for_line("after-5")
    assert console.terminal_proc() == proc
    assert console.count_lines("before-2") == 1  # the screen as it was, not a replay on top of it
    assert console.terminal_focused()
    assert [info["proc"] for info in running_ptys(console_server)] == [proc]  # no second shell


def test_reattaching_paints_the_current_screen_not_a_replay_of_the_history(
    console: Console, console_server: Server
) -> None:
    console.log_in(console_server.token)
    open_terminal_view(console)
    console.type_in_terminal("seq 1 300")
    console.wait_for_line("300")
    assert console.count_lines("50") == 1  # scrolled off the screen, still in this terminal's scrollback
    rows, _ = console.terminal_size()
    console.page.reload()
    console.wait_for_line("300")
    numbers = [int(line) for line in console.terminal_lines() if line.strip().isdigit()]
    assert numbers == list(range(numbers[0], 301)) and len(numbers) < rows, numbers  # the screen, nothing older


def test_the_terminal_follows_the_window_size(console: Console, console_server: Server) -> None:
    page = console.page
    console.log_in(console_server.token)
    open_terminal_view(console)
    size = console.terminal_size()
    assert console.remote_size("size1") == size
    page.set_viewport_size({"width": 1000, "height": 480})
    smaller = eventually(lambda: console.terminal_size() != size and console.terminal_size(), "a smaller xterm")
    assert smaller[0] < size[0] and smaller[1] < size[1]
    assert console.remote_size("size2") == smaller


def test_tabs_hold_several_terminals_each_kept_or_ended_with_its_tab(console: Console, console_server: Server) -> None:
    page = console.page
    console.log_in(console_server.token)
    first = open_terminal_view(console)
    console.type_in_terminal("echo one-$((1*1))")
    console.wait_for_line("one-1")

    page.select_option("#terminal-keep", "kill")
    page.click("#new-terminal")
    second = eventually(lambda: console.terminal_proc() not in (None, first) and console.terminal_proc(), "tab 2")
    console.running_terminal()
    eventually(console.terminal_focused, "the keyboard in the new terminal")
    console.type_in_terminal("echo two-$((2*1))")
    console.wait_for_line("two-2")
    assert console.count_lines("one-1") == 0
    assert console.count_lines("one-1", index=0) == 1  # every tab readable through the hook
    modes = {info["proc"]: info["on_disconnect"] for info in running_ptys(console_server)}
    assert modes == {first: "keep", second: "kill"}
    expect(page.locator("#terminal-status")).to_contain_text("ends with the tab")

    page.locator(f".term-tab[data-proc='{first}'] .term-label").click()
    assert console.terminal_proc() == first
    eventually(console.terminal_focused, "the keyboard follows the tab")
    console.type_in_terminal("echo again-$((3*1))")
    console.wait_for_line("again-3")

    page.locator(f".term-tab[data-proc='{second}'] .term-close").click()  # ends that one
    eventually(lambda: [info["proc"] for info in running_ptys(console_server)] == [first], "the second shell ended")
    page.locator(f".term-tab[data-proc='{first}'] .term-close").click()  # keeps that one, detached
    expect(page.locator(".term-tab")).to_have_count(0)
    eventually(
        lambda: [(i["proc"], i["attached"]) for i in running_ptys(console_server)] == [(first, 0)], "kept, detached"
    )
    row = page.locator(f"#sessions tr[data-proc='{first}']")
    expect(row.locator(".state")).to_have_text("running · 0 attached")
    row.locator("button[data-action=open]").click()
    console.wait_for_line("again-3")


def test_opening_the_terminal_again_takes_the_kept_shell_instead_of_starting_another(
    browser: Any, console: Console, console_server: Server
) -> None:
    console.log_in(console_server.token)
    proc = open_terminal_view(console)
    console.type_in_terminal("echo mine-$((4*4))")
    console.wait_for_line("mine-16")
    console.page.close()  # the page goes: its kept shell stays, detached
    eventually(lambda: [(i["proc"], i["attached"]) for i in running_ptys(console_server)] == [(proc, 0)], "detached")

    later = Console(browser, console_server.http).open()
    try:
        later.log_in(console_server.token)
        assert open_terminal_view(later) == proc
        later.wait_for_line("mine-16")
        assert [info["proc"] for info in running_ptys(console_server)] == [proc]
    finally:
        later.close()


def test_another_browser_finds_the_sessions_and_shares_one_with_its_screen(
    browser: Any, console: Console, console_server: Server
) -> None:
    console.log_in(console_server.token)
    proc = open_terminal_view(console)
    console.type_in_terminal("echo mark-$((3*4))")
    console.wait_for_line("mark-12")

    other = Console(browser, console_server.http).open()  # another browser profile: its own session storage
    try:
        other.log_in(console_server.token)
        own = open_terminal_view(other)
        assert own != proc  # that session is in use: this one gets its own shell
        row = other.page.locator(f"#sessions tr[data-proc='{proc}']")
        expect(row.locator(".name")).to_have_text("console 1")
        expect(row.locator(".command")).to_contain_text("bash")
        expect(row.locator(".state")).to_have_text("running · 1 attached")
        expect(row.locator(".age")).to_have_text(re.compile(r"^\d+ s$"))
        row.locator("button[data-action=open]").click()
        eventually(lambda: other.terminal_proc() == proc, "the shared session in a tab")
        other.wait_for_line("mark-12")
        assert other.count_lines("mark-12") == 1
        eventually(other.terminal_focused, "the keyboard in the shared session")
        other.type_in_terminal("echo from-other-$((7*6))")
        console.wait_for_line("from-other-42")  # both see it
        expect(row.locator(".state")).to_have_text("running · 2 attached")
    finally:
        other.close()


def test_a_shell_the_cli_started_with_binary_output_can_be_opened_and_typed_into(
    console: Console, console_server: Server
) -> None:
    with RpcClient(console_server.url, console_server.token) as cli:
        pty = {"rows": 24, "cols": 80}
        started = cli.call("start", argv=["bash", "--norc"], pty=pty, binary=True, on_disconnect="keep", name="cli")
        proc = started["proc"]
        cli.call("write", proc=proc, data="echo cli-$((5*5))\r")
    console.log_in(console_server.token)
    console.tab("terminal")
    console.running_terminal()
    row = console.page.locator(f"#sessions tr[data-proc='{proc}']")
    row.locator("button[data-action=open]").click()
    eventually(lambda: console.terminal_proc() == proc, "the CLI's shell in a tab")
    console.wait_for_line("cli-25")
    eventually(console.terminal_focused, "the keyboard in the terminal")
    console.type_in_terminal("echo web-$((6*6))")
    console.wait_for_line("web-36")


def test_ending_a_terminal_says_so_and_disables_end(console: Console, console_server: Server) -> None:
    page = console.page
    console.log_in(console_server.token)
    proc = open_terminal_view(console)
    expect(page.locator("#end-terminal")).to_be_enabled()
    page.click("#end-terminal")
    console.wait_for_line(rf"\[process {proc} ended: killed by SIGKILL\]")
    expect(page.locator("#end-terminal")).to_be_disabled()
    expect(page.locator(f".term-tab[data-proc='{proc}']")).to_have_class("term-tab state-exited active")
    expect(page.locator("#terminal-status")).to_contain_text("ended: killed by SIGKILL")


def test_no_strip_of_another_colour_under_the_terminal(console: Console, console_server: Server) -> None:
    page = console.page
    console.log_in(console_server.token)
    open_terminal_view(console)
    for height in (700, 703, 707, 711):  # the rows never fill the box exactly: a strip is left
        page.set_viewport_size({"width": 1000, "height": height})
        page.wait_for_timeout(150)
        box = page.locator("#terminals").bounding_box()
        screen = page.locator(".term-pane:not([hidden]) .xterm-screen").bounding_box()
        top = int(screen["y"] + screen["height"]) + 1
        bottom = int(box["y"] + box["height"]) - 1
        assert bottom - top >= 2, (top, bottom)
        shot = page.screenshot(clip={"x": box["x"] + 2, "y": top, "width": 40, "height": bottom - top})
        _, _, rows = png_pixels(shot)
        colours = {row[i : i + 3] for row in rows for i in range(0, len(row), 3)}
        assert colours == {bytes([0x14, 0x16, 0x1B])}, (height, colours)
