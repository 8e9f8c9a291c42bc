"""The web console in a real browser: Debian's chromium, driven by Playwright.

Playwright is only the driver here: the browser is the system's
``/usr/bin/chromium`` (``make test`` installs it), never one downloaded by
``playwright install``.  Every wait is bounded (10 s).  Set
``CONSOLE_SCREENSHOTS=docs/screenshots`` to refresh the README's pictures.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.client import RpcClient
from tests.redis_server import RedisServer
from tests.server import Server

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000
VIEWPORT = {"width": 1100, "height": 700}
PREFIX = "/procwire"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test installs it)")

T = TypeVar("T")


def eventually(probe: Callable[[], T], what: str, timeout: float = TIMEOUT_MS / 1000) -> T:
    """Poll ``probe`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what} (last: {value!r})")
        time.sleep(0.05)


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


class Console:
    """One browser tab on the console, with the page's own errors collected."""

    def __init__(self, browser: Any, base: str) -> None:
        self.base = base
        self.context = browser.new_context(viewport=VIEWPORT)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def open(self) -> Console:
        self.page.goto(self.base + "/")
        return self

    def log_in(self, token: str) -> None:
        page = self.page
        expect(page.locator("#login")).to_be_visible()
        page.fill("#token", token)
        page.click("#login-form button[type=submit]")
        expect(page.locator("#status")).to_have_class(re.compile(r"\bok\b"))

    def tab(self, view: str) -> None:
        self.page.click(f".tab[data-view={view}]")
        expect(self.page.locator(f"#view-{view}")).to_be_visible()

    def run(self, command: str) -> int:
        """Start ``command`` from the Run view; its proc once the page shows it."""
        page = self.page
        self.tab("run")
        before = page.get_attribute("#current", "data-proc")
        page.fill("#argv", command)
        page.click("#start")
        shown = eventually(lambda: page.get_attribute("#current", "data-proc") != before, f"{command!r} started")
        assert shown
        return int(page.get_attribute("#current", "data-proc") or 0)

    def row(self, proc: int) -> Any:
        return self.page.locator(f"#processes tbody tr[data-proc='{proc}']")

    # -- the terminal ------------------------------------------------------------

    def terminal_lines(self) -> list[str]:
        return self.page.evaluate("procwireConsole.terminalText()").split("\n")

    def terminal_size(self) -> tuple[int, int]:
        rows, cols = self.page.evaluate("[procwireConsole.terminal.rows, procwireConsole.terminal.cols]")
        return rows, cols

    def terminal_proc(self) -> int | None:
        return self.page.evaluate("procwireConsole.terminalProc")

    def type_in_terminal(self, line: str) -> None:
        self.page.click("#terminal")
        self.page.keyboard.type(line)
        self.page.keyboard.press("Enter")

    def wait_for_line(self, pattern: str) -> re.Match[str]:
        """A terminal line that is exactly ``pattern`` (a regex): output, not the echo of the command."""
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            for line in self.terminal_lines():
                match = regex.fullmatch(line.strip())
                if match:
                    return match
            return None

        return eventually(found, f"a terminal line {pattern!r}")

    def remote_size(self, tag: str) -> tuple[int, int]:
        """What the program on the terminal sees: ``stty size`` run in it."""
        self.type_in_terminal(f"echo {tag}-$(stty size)-end")
        match = self.wait_for_line(rf"{tag}-(\d+) (\d+)-end")
        return int(match[1]), int(match[2])

    def close(self) -> None:
        self.context.close()
        assert not self.errors, f"errors in the page: {self.errors}"


@pytest.fixture
def console(browser: Any, server: Server) -> Iterator[Console]:
    opened = Console(browser, server.http).open()
    yield opened
    opened.close()


def kill_if_running(server: Server, proc: int | None) -> None:
    """Clean up through the protocol whatever a failed test left running."""
    if proc is None:
        return
    with RpcClient(server.url, server.token) as client:
        for info in client.call("list")["processes"]:
            if info["proc"] == proc and info["state"] == "running":
                client.call("kill", proc=proc)


# -- the page and its assets ---------------------------------------------------------


def test_the_page_and_its_assets_need_no_token_but_everything_else_does(console: Console, server: Server) -> None:
    request = console.context.request
    for path in ["/", "/console/console.js", "/console/console.css", "/vendor/xterm.js", "/vendor/xterm.css"]:
        assert request.get(server.http + path).status == 200, path
    assert request.get(server.http + "/vendor/addon-fit.js").status == 200
    assert request.get(server.http + "/vendor/package.json").status == 404
    assert request.get(server.http + "/api/clients").status == 401
    assert request.post(server.http + "/").status == 401
    page = request.get(server.http + "/")
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_log_in_keeps_the_token_in_session_storage_not_in_the_url(console: Console, server: Server) -> None:
    console.log_in(server.token)
    page = console.page
    assert "token" not in page.url
    assert page.evaluate("sessionStorage.getItem('procwire.token')") == server.token
    page.reload()  # still logged in, without asking again
    expect(page.locator("#status")).to_have_class(re.compile(r"\bok\b"))
    expect(page.locator("#login")).to_be_hidden()
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('procwire.token')") is None


def test_a_wrong_token_is_refused_and_asked_again(console: Console) -> None:
    console.page.fill("#token", "not-the-token")
    console.page.click("#login-form button[type=submit]")
    expect(console.page.locator("#login-error")).to_contain_text("refused")
    expect(console.page.locator("#login")).to_be_visible()


# -- running commands ------------------------------------------------------------------


def test_echo_hello_shows_hello_and_exit_code_0_in_the_list(console: Console, server: Server) -> None:
    console.log_in(server.token)
    proc = console.run("echo hello")
    expect(console.page.locator("#stdout")).to_have_text("hello\n")
    expect(console.page.locator("#current-state")).to_have_text("exit 0")
    console.tab("processes")
    row = console.row(proc)
    expect(row.locator(".state")).to_have_text("exited")
    expect(row.locator(".exit")).to_have_text("exit 0")
    expect(row.locator(".command")).to_have_text("echo hello")


def test_stdout_and_stderr_are_shown_apart(console: Console, server: Server, screenshots: Path) -> None:
    console.log_in(server.token)
    console.run('sh -c \'echo hello; echo oops >&2; printf "%s\\n" "a b" c; exit 3\'')
    page = console.page
    expect(page.locator("#current-state")).to_have_text("exit 3")
    expect(page.locator("#stdout")).to_have_text("hello\na b\nc\n")
    expect(page.locator("#stderr")).to_have_text("oops\n")
    page.screenshot(path=screenshots / "console-run.png")


def test_a_json_array_is_taken_as_argv(console: Console, server: Server) -> None:
    console.log_in(server.token)
    console.run('["printf", "%s|", "two words", "$HOME"]')
    expect(console.page.locator("#stdout")).to_have_text("two words|$HOME|")


def test_stdin_lines_close_stdin_and_signals(console: Console, server: Server) -> None:
    console.log_in(server.token)
    page = console.page
    console.run("cat")
    page.fill("#stdin", "typed line")
    page.press("#stdin", "Enter")
    expect(page.locator("#stdout")).to_have_text("typed line\n")
    expect(page.locator("#stdin")).to_have_value("")
    page.click("#close-stdin")
    expect(page.locator("#current-state")).to_have_text("exit 0")

    console.run("sleep 60")
    page.select_option("#signal", "SIGINT")
    page.click("#send-signal")
    expect(page.locator("#current-state")).to_have_text("killed by SIGINT")

    console.run("sleep 60")
    page.click("#kill")
    expect(page.locator("#current-state")).to_have_text("killed by SIGKILL")


def test_the_process_list_shows_state_and_exit_status(console: Console, server: Server, screenshots: Path) -> None:
    console.log_in(server.token)
    page = console.page
    done = console.run("echo hello")
    expect(page.locator("#current-state")).to_have_text("exit 0")
    failed = console.run("sh -c 'echo oops >&2; exit 3'")
    expect(page.locator("#current-state")).to_have_text("exit 3")
    sleeper = console.run("sleep 60")
    console.tab("processes")
    expect(console.row(done).locator(".exit")).to_have_text("exit 0")
    expect(console.row(failed).locator(".exit")).to_have_text("exit 3")
    expect(console.row(sleeper).locator(".state")).to_have_text("running")
    expect(console.row(sleeper).locator(".on-disconnect")).to_have_text("kill")
    page.screenshot(path=screenshots / "console-processes.png")
    console.row(sleeper).locator("button[data-action=kill]").click()  # the exit notification refreshes the list
    expect(console.row(sleeper).locator(".exit")).to_have_text("killed by SIGKILL")


def test_attach_to_a_kept_process_replays_its_output_then_follows_it(console: Console, server: Server) -> None:
    with RpcClient(server.url, server.token) as other:
        started = other.call(
            "start", argv=["sh", "-c", "echo early; read line; echo got $line"], on_disconnect="keep", name="kept"
        )
    proc = started["proc"]
    try:
        console.log_in(server.token)
        console.tab("processes")
        row = console.row(proc)
        expect(row.locator(".on-disconnect")).to_have_text("keep")
        row.locator("button[data-action=attach]").click()
        page = console.page
        expect(page.locator("#view-run")).to_be_visible()
        expect(page.locator("#stdout")).to_have_text("early\n")  # replayed from the server's buffer
        page.fill("#stdin", "more")
        page.press("#stdin", "Enter")
        expect(page.locator("#stdout")).to_have_text("early\ngot more\n")
        expect(page.locator("#current-state")).to_have_text("exit 0")
    finally:
        kill_if_running(server, proc)


# -- the terminal --------------------------------------------------------------------


def test_terminal_runs_commands_follows_resizes_and_survives_a_reload(
    console: Console, server: Server, screenshots: Path
) -> None:
    page = console.page
    console.log_in(server.token)
    console.tab("terminal")
    page.click("#open-terminal")
    proc = eventually(console.terminal_proc, "the terminal started")
    try:
        assert page.evaluate("sessionStorage.getItem('procwire.terminal')") == str(proc)
        eventually(lambda: any(line.strip() for line in console.terminal_lines()), "a prompt")
        console.type_in_terminal("echo term-$((6*7))")
        console.wait_for_line("term-42")

        size = console.terminal_size()
        assert console.remote_size("size1") == size
        console.type_in_terminal("ls --color=auto /usr")
        console.wait_for_line(r".*\bshare\b.*")
        page.screenshot(path=screenshots / "console-terminal.png")

        page.set_viewport_size({"width": 760, "height": 480})
        smaller = eventually(lambda: console.terminal_size() != size and console.terminal_size(), "a smaller xterm")
        assert smaller[0] < size[0] and smaller[1] < size[1]
        assert console.remote_size("size2") == smaller

        page.reload()
        expect(page.locator("#view-terminal")).to_be_visible()
        eventually(lambda: console.terminal_proc() == proc, "the terminal attached again")
        console.wait_for_line("term-42")  # earlier output, replayed from offset 0
        console.type_in_terminal("echo after-$((2+3))")
        console.wait_for_line("after-5")
        assert console.remote_size("size3") == console.terminal_size()

        page.click("#kill-terminal")
        console.wait_for_line(rf"\[process {proc} ended: killed by SIGKILL\]")
        assert page.evaluate("sessionStorage.getItem('procwire.terminal')") is None
        expect(page.locator("#open-terminal")).to_be_enabled()
    finally:
        kill_if_running(server, proc)


# -- behind a path prefix --------------------------------------------------------------


class PrefixedServer(Server):
    """gunicorn mounted under SCRIPT_NAME, as behind a proxy that keeps the prefix."""

    @property
    def http(self) -> str:
        return super().http + PREFIX


@pytest.fixture(scope="module")
def prefixed() -> Iterator[Server]:
    running = PrefixedServer(env={"SCRIPT_NAME": PREFIX, "PROCWIRE_KILL_GRACE": "1"}).start()
    try:
        yield running
    finally:
        running.stop()


def test_the_console_works_behind_a_path_prefix(browser: Any, prefixed: Server) -> None:
    console = Console(browser, prefixed.http)
    try:
        console.open()
        assert console.page.url.endswith(PREFIX + "/")
        console.log_in(prefixed.token)
        console.run("echo hello")
        expect(console.page.locator("#stdout")).to_have_text("hello\n")
    finally:
        console.close()


def test_the_processes_view_of_one_host_lists_and_kills_a_process_of_another(browser: Any, tmp_path: Path) -> None:
    """Cluster mode (docs/scaling.md): the page talks to host B; the process runs on host A."""
    redis = RedisServer().start()
    hosts: list[Server] = []
    console = None
    try:
        env = {"PROCWIRE_REDIS_URL": redis.url, "PROCWIRE_CLUSTER_HEARTBEAT": "1", "PROCWIRE_STATE_DIR": str(tmp_path)}
        hosts += [Server(env=env).start(), Server(env=env).start()]
        far, near = hosts
        with RpcClient(far.url, far.token) as client:
            proc = client.call("start", argv=["sleep", "30"], name="far away", on_disconnect="keep")["proc"]
            node = client.hello["params"]["node"]
        console = Console(browser, near.http).open()
        console.log_in(near.token)
        console.tab("processes")
        row = console.row(proc)
        expect(row.locator(".node")).to_have_text(node)
        expect(row.locator(".state")).to_have_text("running")
        row.locator("button[data-action=kill]").click()
        expect(row.locator(".exit")).to_have_text("killed by SIGKILL")
        assert console.errors == []
    finally:
        if console is not None:
            console.close()
        for host in hosts:
            host.stop()
        redis.stop()
