"""The web console in a real browser, for tests/test_console*.py: Debian's chromium, driven by Playwright.

Playwright is only the driver here: the browser is the system's
``/usr/bin/chromium`` (``make test`` installs it), never one downloaded by
``playwright install``.  Every wait is bounded (10 s unless said).  Set
``CONSOLE_SCREENSHOTS=docs/screenshots`` to refresh the README's pictures.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import time
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.client import RpcClient, RpcFailure
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
UP = re.compile(r"\bup\b")

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test installs it)"
)

T = TypeVar("T")


def console_env(home: Path) -> dict[str, str]:
    """A server's settings for console tests: HOME empty (no user's shell start-up files), a
    short kill grace, and a stdin chunk limit small enough that uploads take several writes."""
    return {"HOME": str(home), "PROCWIRE_KILL_GRACE": "1", "PROCWIRE_MAX_STDIN_CHUNK": "65536"}


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


class Console:
    """One browser tab on the console, with the page's own errors collected."""

    def __init__(self, browser: Any, base: str, viewport: dict[str, int] | None = None, context: Any = None) -> None:
        self.base = base
        self.own_context = context is None
        self.context = context or browser.new_context(viewport=viewport or VIEWPORT, accept_downloads=True)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def open(self, path: str = "/") -> Console:
        self.page.goto(self.base + path)
        return self

    def log_in(self, token: str) -> None:
        page = self.page
        expect(page.locator("#login")).to_be_visible()
        page.fill("#token", token)
        page.click("#login-form button[type=submit]")
        self.wait_up()

    def wait_up(self, timeout: int = TIMEOUT_MS) -> None:
        expect(self.page.locator("#status")).to_have_class(UP, timeout=timeout)

    def tab(self, view: str) -> None:
        self.page.click(f".tab[data-view={view}]")
        expect(self.page.locator(f"#view-{view}")).to_be_visible()

    def client_id(self) -> str:
        return str(self.page.evaluate("procwireConsole.clientId"))

    def run(self, command: str) -> int:
        """Start ``command`` from the Run view; its proc once the page shows it."""
        page = self.page
        self.tab("run")
        shown = page.locator("#current")

        def proc_shown() -> tuple[str | None, str]:
            return shown.get_attribute("data-proc"), shown.inner_text()

        before = proc_shown()  # a proc id may repeat after a server restart, the command line with it
        page.fill("#argv", command)
        page.click("#start")
        eventually(lambda: proc_shown()[0] is not None and proc_shown() != before, f"{command!r} started")
        return int(shown.get_attribute("data-proc") or 0)

    def row(self, proc: int) -> Any:
        return self.page.locator(f"#processes tbody tr[data-proc='{proc}']")

    # -- terminals -----------------------------------------------------------------

    def terminal_text(self, index: int | None = None) -> str:
        return str(self.page.evaluate("(index) => procwireConsole.terminalText(index ?? undefined)", index))

    def terminal_lines(self, index: int | None = None) -> list[str]:
        return self.terminal_text(index).split("\n")

    def terminal_size(self) -> tuple[int, int]:
        rows, cols = self.page.evaluate("[procwireConsole.terminal.rows, procwireConsole.terminal.cols]")
        return rows, cols

    def terminal_proc(self) -> int | None:
        return self.page.evaluate("procwireConsole.terminalProc")

    def terminals(self) -> list[dict[str, Any]]:
        return list(self.page.evaluate("procwireConsole.terminals"))

    def running_terminal(self) -> int:
        """The active terminal's proc, once its process runs (a prompt shown)."""
        proc = eventually(self.terminal_proc, "the terminal started")
        eventually(lambda: any(line.strip() for line in self.terminal_lines()), "a prompt")
        return int(proc)

    def type_in_terminal(self, line: str) -> None:
        """Type at whatever has the focus: the terminal, if the page put it there."""
        self.page.keyboard.type(line)
        self.page.keyboard.press("Enter")

    def wait_for_line(
        self, pattern: str, index: int | None = None, timeout: float = TIMEOUT_MS / 1000
    ) -> re.Match[str]:
        """A terminal line that is exactly ``pattern`` (a regex): output, not the echo of the command."""
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            for line in self.terminal_lines(index):
                match = regex.fullmatch(line.strip())
                if match:
                    return match
            return None

        return eventually(found, f"a terminal line {pattern!r}", timeout)

    def count_lines(self, pattern: str, index: int | None = None) -> int:
        regex = re.compile(pattern)
        return sum(1 for line in self.terminal_lines(index) if regex.fullmatch(line.strip()))

    def remote_size(self, tag: str) -> tuple[int, int]:
        """What the program on the terminal sees: ``stty size`` run in it."""
        self.type_in_terminal(f"echo {tag}-$(stty size)-end")
        match = self.wait_for_line(rf"{tag}-(\d+) (\d+)-end")
        return int(match[1]), int(match[2])

    def terminal_focused(self) -> bool:
        """The keyboard goes to the active terminal (xterm's textarea has the focus)."""
        return bool(
            self.page.evaluate(
                "() => { const t = procwireConsole.terminal; return Boolean(t && t.textarea"
                " && document.activeElement === t.textarea && document.hasFocus()); }"
            )
        )

    def close(self) -> None:
        if self.own_context:
            self.context.close()
        else:
            self.page.close()
        assert not self.errors, f"errors in the page: {self.errors}"


def clean_up(server: Server) -> None:
    """End and forget every process of the token: the next test starts with an empty list
    (kept terminals outlive the page that opened them, and a leftover would be adopted).
    A process of a closed page may be forgotten meanwhile (-32002): that is clean too."""
    with RpcClient(server.url, server.token) as client:

        def each(method: str, state: str) -> None:
            for info in client.call("list")["processes"]:
                if info["state"] == state:
                    try:
                        client.call(method, proc=info["proc"])
                    except RpcFailure as failure:
                        if failure.code != -32002:
                            raise

        each("kill", "running")
        eventually(
            lambda: all(info["state"] == "exited" for info in client.call("list")["processes"]), "every process ended"
        )
        each("release", "exited")


def admin_request(server: Server, method: str, path: str) -> Any:
    """A call to the HTTP API with the server's (admin) token."""
    request = urllib.request.Request(
        server.http + path, method=method, headers={"Authorization": f"Bearer {server.token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) pixels of a PNG as Chromium writes it (8-bit, no palette)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, header = 8, b"", b""
    while at < len(data):
        length, kind = struct.unpack("!I4s", data[at : at + 8])
        chunk = data[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        at += 12 + length
    width, height, depth, color = struct.unpack("!IIBB", header[:10])
    assert depth == 8 and color in (2, 6), (depth, color)
    size = 4 if color == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * size
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - size] if x >= size else 0
            up = previous[x]
            corner = previous[x - size] if x >= size else 0
            if kind == 1:
                line[x] = (line[x] + left) & 255
            elif kind == 2:
                line[x] = (line[x] + up) & 255
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 255
            elif kind == 4:
                guess = left + up - corner
                near = min((abs(guess - left), 0, left), (abs(guess - up), 1, up), (abs(guess - corner), 2, corner))
                line[x] = (line[x] + near[2]) & 255
        rows.append(bytes(pixel for i, pixel in enumerate(line) if i % size < 3))
        previous = line
    return width, height, rows
