"""The web console's page, login, path prefix and cluster view, in a real browser (tests/console_page.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.login_codes import CodeStore
from tests.client import RpcClient
from tests.console_page import Console, expect, needs_chromium
from tests.redis_server import RedisServer
from tests.server import Server

PREFIX = "/procwire"
pytestmark = needs_chromium
pytest_plugins = ["tests.console_fixtures"]  # its fixtures: browser, console, screenshots


# -- the page (its files and headers, without a browser: tests/test_console_http.py) --------


def test_log_in_keeps_the_token_in_session_storage_not_in_the_url(console: Console, console_server: Server) -> None:
    console.log_in(console_server.token)
    page = console.page
    assert "token" not in page.url
    assert page.evaluate("sessionStorage.getItem('procwire.token')") == console_server.token
    page.reload()  # still logged in, without asking again
    console.wait_up()
    expect(page.locator("#login")).to_be_hidden()
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('procwire.token')") is None


def test_a_one_time_login_link_logs_in_once_without_leaving_the_code_in_the_address(
    browser: Any, console_server: Server
) -> None:
    """The link `make run` prints: the page trades the code for the token (POST console/redeem)."""
    code = CodeStore.of(console_server.state_dir, f"127.0.0.1:{console_server.port}").issue()
    first = Console(browser, console_server.http).open(f"/?code={code}&view=1")
    second = Console(browser, console_server.http)
    try:
        first.wait_up()
        assert first.page.url == console_server.http + "/?view=1"  # replaced: not in the history either
        assert first.page.evaluate("sessionStorage.getItem('procwire.token')") == console_server.token
        second.open(f"/?code={code}")  # a code works once
        expect(second.page.locator("#login")).to_be_visible()
        expect(second.page.locator("#login-error")).to_contain_text("this login link is not valid")
        assert second.page.url == console_server.http + "/"
        assert second.page.evaluate("sessionStorage.getItem('procwire.token')") is None
    finally:
        first.close()
        second.close()


def test_a_wrong_token_is_refused_and_asked_again(console: Console) -> None:
    console.page.fill("#token", "not-the-token")
    console.page.click("#login-form button[type=submit]")
    expect(console.page.locator("#login-error")).to_contain_text("refused")
    expect(console.page.locator("#login")).to_be_visible()


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
