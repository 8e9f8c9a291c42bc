"""The JavaScript client (clients/js/): served without a token beside its types (through Flask's
test client), and its own Node tests (``node --test``) run against a real server started here,
their result asserted."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.server import ROOT, Server, children_of, wait_until

CLIENT = ROOT / "clients" / "js"
NODE_TIMEOUT = 240  # seconds for the whole Node suite (it takes about 15 on a quiet machine)


@pytest.fixture(scope="module")
def js_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own: the Node tests cut its connections (DELETE /api/clients/<id>)."""
    home = tmp_path_factory.mktemp("home")
    running = Server(env={"PROCWIRE_KILL_GRACE": "1", "HOME": str(home)}).start()
    try:
        yield running
    finally:
        running.stop()


def test_the_client_and_its_types_are_served_without_a_token(client: FlaskClient) -> None:
    response = client.get("/client/procwire.js")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/javascript")
    assert response.data == (CLIENT / "procwire.js").read_bytes()
    response = client.get("/client/procwire.d.ts")
    assert response.status_code == 200
    assert response.data == (CLIENT / "procwire.d.ts").read_bytes()
    assert client.get("/client/package.json").status_code == 404
    assert client.get("/client/helpers.js").status_code == 404
    assert client.get("/api/clients").status_code == 401  # the rest still needs the token


def test_the_node_suite_passes_against_the_real_server(js_server: Server, tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node, "the JavaScript client's tests need Node.js 20 or later"
    assert (CLIENT / "node_modules" / "ws").is_dir(), "run `make install` (npm ci in clients/js)"
    files = sorted(str(path.relative_to(CLIENT)) for path in (CLIENT / "test").glob("*.test.js"))
    assert len(files) >= 2
    env = dict(os.environ)
    env.update(PROCWIRE_URL=js_server.url, PROCWIRE_HTTP=js_server.http, PROCWIRE_TOKEN=js_server.token)
    try:
        run = subprocess.run(
            [node, "--test", *files],
            cwd=CLIENT,
            env=env,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"node --test did not finish in {NODE_TIMEOUT} s:\n{expired.stdout}")
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert "# fail 0" in report and "# pass " in report, report
    passed = int(report.split("# pass ")[1].split()[0])
    assert passed >= 18, report
    worker = js_server.worker_pids()[0]
    assert wait_until(lambda: children_of(worker) == []), f"left running by the Node tests: {children_of(worker)}"
