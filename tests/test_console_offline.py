"""The console without its console_server, in a real browser: it says so everywhere, and comes back by
itself, following again what it showed without losing or repeating output.

Two ways to lose the console_server, both real: the server stopped, then a new one started on the same
port (kept processes die with their worker, so the page must tell that they are gone); and the
server closing the page's connection while it stays up (``DELETE /api/clients/<id>``, as an
operator or a proxy restart would), where kept processes live on and the page must continue
each stream from the last offset it received, and say why the ones not kept are lost.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.client import RpcClient
from tests.console_page import Console, admin_request, console_env, eventually, expect, needs_chromium
from tests.server import Server

pytestmark = needs_chromium
pytest_plugins = ["tests.console_fixtures"]

TICKS = 300


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    """A server this test may stop and start again on the same port."""
    running = Server(env=console_env(tmp_path)).start()
    try:
        yield running
    finally:
        running.stop()


def test_backoff_starts_at_half_a_second_and_doubles_to_ten_with_jitter(console: Console) -> None:
    delays = console.page.evaluate(
        "import('./console/link.js').then((link) => Array.from({length: 8}, (_, n) => link.backoff(n)))"
    )
    for attempt, delay in enumerate(delays):
        base = min(500 * 2**attempt, 10_000)
        assert 0.8 * base <= delay <= 1.2 * base, (attempt, delay)


def test_a_crashed_server_is_said_everywhere_until_it_is_back_by_itself(browser: Any, own_server: Server) -> None:
    """The worker SIGKILLed while its master is stopped: the connection drops without any exit
    notification, and nothing answers until the master (continued) starts a new worker."""
    console = Console(browser, own_server.http).open()
    page = console.page
    master = own_server.process
    assert master is not None
    try:
        console.log_in(own_server.token)
        page.check("#keep")
        console.run("sleep 60")
        console.tab("terminal")
        terminal = console.running_terminal()
        console.tab("processes")
        expect(page.locator("#processes .state", has_text="running")).to_have_count(2)
        header = page.locator("header").bounding_box()["height"]

        os.kill(master.pid, signal.SIGSTOP)
        os.kill(own_server.worker_pids()[0], signal.SIGKILL)
        expect(page.locator("#status")).to_have_text("offline")
        expect(page.locator("#offline")).to_contain_text("the server cannot be reached")
        assert page.locator("header").bounding_box()["height"] == header  # no wrapped header
        expect(page.locator("#processes .state", has_text="running")).to_have_count(0)
        expect(page.locator("#processes .state", has_text="unknown")).to_have_count(2)
        expect(page.locator("#processes-note")).to_contain_text("Offline: states unknown since")
        expect(page.locator("#processes button:enabled")).to_have_count(0)
        console.tab("terminal")
        expect(page.locator("#terminal-status")).to_contain_text(f"proc {terminal} · offline")
        expect(page.locator("#end-terminal")).to_be_disabled()
        console.tab("run")
        expect(page.locator("#current-state")).to_have_text("unknown: offline")
        for selector in ("#kill", "#send-signal", "#send-stdin", "#start"):
            expect(page.locator(selector)).to_be_disabled()

        os.kill(master.pid, signal.SIGCONT)  # a new worker: the old one's processes were killed with it
        console.wait_up(timeout=30_000)
        expect(page.locator("#offline")).to_be_hidden()
        expect(page.locator("#current-state")).to_have_text("no longer known to the server")
        expect(page.locator("#start")).to_be_enabled()
        console.tab("terminal")
        lost = rf"\[process {terminal} was lost: the server no longer knows it: no such process: {terminal}\]"
        console.wait_for_line(lost)
        expect(page.locator(f".term-tab[data-proc='{terminal}']")).to_have_class("term-tab state-gone active")
        page.click("#new-terminal")  # and a new one works
        eventually(lambda: console.terminal_proc() not in (None, terminal), "a new terminal")
        console.running_terminal()
    finally:
        os.kill(master.pid, signal.SIGCONT)
        console.close()


def test_a_server_stopped_and_started_again_is_found_again(browser: Any, own_server: Server) -> None:
    """A clean stop, then a new server on the same port, found by the page's own retries."""
    console = Console(browser, own_server.http).open()
    page = console.page
    try:
        console.log_in(own_server.token)
        page.check("#keep")
        console.run("sleep 60")
        own_server.stop()
        expect(page.locator("#status")).to_have_text("offline")
        # Its exit, when the server sent it before closing; else unknown: never "running".
        expect(page.locator("#current-state")).to_have_text(re.compile("^(killed by SIGTERM|unknown: offline)$"))
        expect(page.locator("#kill")).to_be_disabled()
        own_server.start()  # again, on the same port
        console.wait_up(timeout=15_000)
        console.run("echo back")
        expect(page.locator("#stdout")).to_have_text("back\n")
    finally:
        console.close()


def test_a_connection_closed_by_the_server_is_replaced_without_losing_output(
    console: Console, console_server: Server
) -> None:
    page = console.page
    ticker = f"for i in $(seq 1 {TICKS}); do echo $i; sleep 0.02; done"
    with RpcClient(console_server.url, console_server.token) as cli:
        proc = cli.call("start", argv=["sh", "-c", ticker], on_disconnect="keep", name="ticker")["proc"]
    console.log_in(console_server.token)
    console.tab("terminal")
    console.running_terminal()
    console.type_in_terminal("echo mark-$((2*3))")
    console.wait_for_line("mark-6")
    kept = console.terminal_proc()
    page.select_option("#terminal-keep", "kill")  # a second terminal, not kept: it ends with the connection
    page.click("#new-terminal")
    eventually(lambda: console.terminal_proc() not in (None, kept), "a second terminal")
    not_kept = console.running_terminal()
    page.click(f".term-tab[data-proc='{kept}'] .term-label")
    console.tab("processes")
    console.row(proc).locator("button[data-action=attach]").click()
    stdout = page.locator("#stdout")
    eventually(lambda: stdout.inner_text().count("\n") >= 20, "the ticker followed")

    first = console.client_id()
    assert admin_request(console_server, "DELETE", f"/api/clients/{first}") == {"closed": first}
    eventually(lambda: console.client_id() not in (None, first), "a new connection", timeout=15)
    expect(stdout).to_have_text("".join(f"{n}\n" for n in range(1, TICKS + 1)), timeout=20_000)  # no gap, no repeat
    expect(page.locator("#current-state")).to_have_text("exit 0")
    console.tab("terminal")
    expect(page.locator(f".term-tab[data-proc='{not_kept}']")).to_have_class("term-tab state-gone")
    lost = f"[process {not_kept} was lost: it was not kept"
    eventually(lambda: lost.replace(" ", "") in "".join(console.terminal_text(1).split()), "the lost terminal's reason")
    eventually(console.terminal_focused, "the keyboard in the terminal")
    console.type_in_terminal("echo back-$((3*3))")
    console.wait_for_line("back-9")
    assert console.count_lines("mark-6") == 1
