"""The web console's page and files over plain HTTP, through Flask's test client: served without a
token and with their headers, and nothing else is (the page in a browser: tests/test_console.py)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.flask_app import ADMIN_TOKEN

MODULES = [
    "main.js",
    "link.js",
    "util.js",
    "ansi.js",
    "search.js",
    "outputview.js",
    "run.js",
    "processes.js",
    "terminal.js",
    "terminals.js",
    "files.js",
    "share.js",
    "recordings.js",
    "console.css",
]


def test_the_page_and_its_assets_need_no_token_but_everything_else_does(client: FlaskClient) -> None:
    for path in ["/", "/vendor/xterm.js", "/vendor/xterm.css", *(f"/console/{name}" for name in MODULES)]:
        assert client.get(path).status_code == 200, path
    assert "javascript" in client.get("/console/main.js").headers["content-type"]
    assert client.get("/vendor/addon-fit.js").status_code == 200
    assert client.get("/vendor/package.json").status_code == 404
    assert client.get("/api/clients").status_code == 401
    assert client.post("/").status_code == 401
    page = client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert ADMIN_TOKEN not in page.text


@pytest.mark.parametrize(
    ("path", "inside"),
    [
        ("/console/../console.py", b"Blueprint"),  # app/operations/console.py, next to console/
        ("/console/..%2fconsole.py", b"Blueprint"),
        ("/console/%2e%2e/console.py", b"Blueprint"),
        ("/vendor/..%2fpackage.json", b"procwire-console"),  # node_modules/../package.json
        ("/vendor/..%2f..%2fpackage.json", b"procwire-console"),
    ],
)
def test_no_file_outside_the_consoles_own_is_served(client: FlaskClient, path: str, inside: bytes) -> None:
    response = client.get(path)
    assert response.status_code in (401, 404), path
    assert inside not in response.data
