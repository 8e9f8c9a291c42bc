"""The README's client examples run as written against a real server: the Python one (sync, then
its asyncio ``main``) in this process, the JavaScript one in Chromium, importing the module the
server serves.  Only the address is changed (the examples use the default 127.0.0.1:9999)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from tests.server import ROOT, Server

pytest_plugins = ["tests.console_fixtures"]  # its fixture: browser

README = ROOT / "README.md"
EXAMPLE_ADDRESS = "127.0.0.1:9999"


def example(section: str, language: str) -> str:
    """The first ``language`` code block after the heading ``section``."""
    text = README.read_text()
    start = text.index(f"### {section}\n")
    match = re.compile(rf"```{language}\n(.*?)```", re.DOTALL).search(text, start)
    assert match is not None, f"no {language} block under {section}"
    return match.group(1)


def test_the_python_example_runs(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    code = example("From Python", "python").replace(EXAMPLE_ADDRESS, f"127.0.0.1:{server.port}")
    namespace: dict[str, Any] = {"token": server.token}
    exec(compile(code, str(README), "exec"), namespace)  # the sync part runs as the module body
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["stdout b'hello\\n'", "0"]
    asyncio.run(namespace["main"]())
    streamed = capsys.readouterr().out.splitlines()
    assert "".join(streamed).replace("stdout b'", "").replace("'", "") == "1\\n2\\n3\\n"


def test_the_javascript_example_runs_in_a_browser(server: Server, browser: Any) -> None:
    code = example("From JavaScript", "js").replace(EXAMPLE_ADDRESS, f"127.0.0.1:{server.port}")
    code = re.sub(r"import \{ Client \} from '([^']+)';", r"const { Client } = await import('\1');", code)
    page = browser.new_page()
    try:
        page.goto(f"{server.http}/healthz")
        result = page.evaluate(
            f"async (token) => {{ {code}\n client.close();"
            " return {code: result.code, stdout: new TextDecoder().decode(result.stdout)}; }",
            server.token,
        )
    finally:
        page.close()
    assert result == {"code": 3, "stdout": "hi\n"}
