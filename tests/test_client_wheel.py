"""The client's own distribution, as a user gets it: ``procwire-client``'s wheel built from
clients/python, installed alone in a fresh virtual environment, used against the real server.

A user of the clients or the CLI must not get Flask, gevent or the server's top-level ``app``
and ``config`` packages (generic names that would collide in their environment); the CLI's
server-side subcommands say how to install the server instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.server import ROOT, Server
from tests.test_cli_support import one_line, procwire

pytestmark = pytest.mark.timeout(600)  # the module's fixture builds a wheel and installs it (pip may download)

CLIENT = ROOT / "clients" / "python"
PIP_BOUND = 300.0  # seconds for one pip command: a cold cache downloads setuptools and the client's dependencies
RUN_BOUND = 30.0


@dataclass
class Installed:
    """The wheel, and a virtual environment holding it and nothing of the server."""

    wheel: Path
    bin: Path
    home: Path

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        """A program of the environment, run away from the checkout (whose ``app`` and ``config`` are importable)."""
        base = {key: value for key, value in os.environ.items() if not key.startswith(("PROCWIRE_", "PYTHON"))}
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            env={**base, "HOME": str(self.home), **(env or {})},
            cwd=self.home,
            capture_output=True,
            timeout=RUN_BOUND,
        )


def build_wheel(into: Path) -> Path:
    """The wheel built from a copy of clients/python, so that no earlier build/ leaves stale modules in it."""
    source = into / "source"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(into), str(source)]
    subprocess.run(pip, check=True, capture_output=True, timeout=PIP_BOUND)
    (wheel,) = into.glob("procwire_client-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    work = tmp_path_factory.mktemp("client-wheel")
    wheel = build_wheel(work)
    environment = work / "venv"
    venv.create(environment, with_pip=True)
    pip = [str(environment / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)]
    subprocess.run(pip, check=True, capture_output=True, timeout=PIP_BOUND)
    home = work / "home"
    home.mkdir()
    yield Installed(wheel, environment / "bin", home)
    shutil.rmtree(work, ignore_errors=True)


def test_the_wheel_holds_the_client_package_only(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        (metadata,) = (name for name in names if name.endswith(".dist-info/METADATA"))
        requires = [line for line in wheel.read(metadata).decode().splitlines() if line.startswith("Requires-Dist:")]
        (entry_points,) = (name for name in names if name.endswith(".dist-info/entry_points.txt"))
        scripts = wheel.read(entry_points).decode()
    assert {name.split("/", 1)[0] for name in names} == {"procwire_client", metadata.split("/", 1)[0]}
    assert {"procwire_client/py.typed", "procwire_client/core/protocol.py", "procwire_client/cli.py"} <= set(names)
    assert sorted(line.split()[1] for line in requires if "extra ==" not in line) == [
        "websocket-client>=1.8",
        "websockets>=13",
    ]
    assert [line for line in requires if "extra ==" in line] == ['Requires-Dist: pytest>=8; extra == "pytest"']
    assert "procwire = procwire_client.cli:main" in scripts
    assert "procwire-token" not in scripts
    assert "[pytest11]\nprocwire = procwire_client.pytest_plugin" in scripts  # docs/testing.md
    assert {"procwire_client/pytest_plugin.py", "procwire_client/testing/launcher.py"} <= set(names)


def test_the_clients_import_and_the_server_does_not(installed: Installed) -> None:
    code = (
        "import importlib.util, json\n"
        "import procwire_client, procwire_client.cli\n"
        "from procwire_client import AsyncClient, Client\n"
        "names = ('flask', 'gevent', 'gunicorn', 'app', 'config')\n"
        "print(json.dumps({name: importlib.util.find_spec(name) is not None for name in names}))\n"
    )
    done = installed.run("python", "-c", code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == dict.fromkeys(("flask", "gevent", "gunicorn", "app", "config"), False)


def test_the_test_launcher_imports_without_pytest_and_says_how_to_install_the_server(installed: Installed) -> None:
    """Without pytest or the server: procwire_client.testing imports, and its launcher says what to install."""
    code = (
        "import importlib.util\n"
        "from procwire_client.testing import ProcwireServer, ServerNotInstalled\n"
        "assert importlib.util.find_spec('pytest') is None\n"
        "try:\n"
        "    ProcwireServer().start()\n"
        "except ServerNotInstalled as error:\n"
        "    print(error)\n"
    )
    done = installed.run("python", "-c", code)
    assert done.returncode == 0, done.stderr
    assert "not installed in this environment: pip install procwire" in done.stdout.decode(), done.stdout


def test_procwire_help(installed: Installed) -> None:
    done = installed.run("procwire", "--help")
    assert done.returncode == 0, done.stderr
    assert b"procwire login" in done.stdout and b"token" in done.stdout


def test_procwire_run_against_the_real_server(installed: Installed, server: Server) -> None:
    done = installed.run(
        "procwire", "run", "--", "echo", "hi", env={"PROCWIRE_URL": server.url, "PROCWIRE_TOKEN": server.token}
    )
    assert (done.returncode, done.stdout) == (0, b"hi\n"), done.stderr


def test_procwire_token_without_the_server_says_how_to_install_it(installed: Installed) -> None:
    done = installed.run("procwire", "token", "alice")
    assert (done.returncode, done.stdout) == (1, b"")
    line = one_line(done.stderr)
    assert "not installed here" in line and "make install" in line, line


def test_procwire_token_with_the_server_installed(server: Server) -> None:
    """The development environment (make install: both distributions) still makes tokens."""
    done = procwire(server, "token", "alice", "--role", "admin")
    assert done.returncode == 0, done.stderr
    assert b'name = "alice"\nrole = "admin"\nsha256 = "' in done.stdout
    assert one_line(procwire(server, "token", "al ice").stderr).startswith("procwire: 'al ice': letters")
