"""Start a real procwire for tests: gunicorn with its gevent worker, on a free loopback port.

How the server is run is the server's own knowledge: its distribution (``procwire``) declares the
``procwire.server_commands`` entry point ``serve`` (config/serve.py), whose ``server_command`` and
``ROOT`` are ``make run``'s gunicorn and the checkout it runs in.  This module finds them the way
``procwire serve`` does (procwire_client/commands/server.py), so the client distribution imports
nothing of the server by name, and says how to install the server when it is missing.

Each server is hermetic: a state directory of its own (never the user's ``~/.local/state``), the
``PROCWIRE_*`` variables of the caller's environment left out (a developer's ``PROCWIRE_CONFIG`` must
not configure it), its log in a file of its own unless told otherwise.  Every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, Self

from procwire_client.commands.server import server_module
from procwire_client.testing import logs
from procwire_client.testing.processes import children_of
from procwire_client.testing.server_settings import ENV_PREFIX
from procwire_client.testing.tokens import new_token, tokens_setting, user_entry

NOT_INSTALLED = (
    "procwire's test fixtures start a real procwire server, which is not installed in this environment: "
    "pip install procwire (from a procwire checkout: pip install -e ./clients/python -e .)"
)
START_TIMEOUT = 20.0  # seconds for gunicorn to answer /healthz
STOP_TIMEOUT = 15.0  # seconds for a graceful stop before the whole group is SIGKILLed
KILL_TIMEOUT = 5.0

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through $http_proxy


class ServerNotInstalled(RuntimeError):
    """The server's distribution is missing (or cannot run from where it is installed)."""


class ServerFailed(RuntimeError):
    """gunicorn exited or did not become healthy in time; the message ends with its log."""


def server_recipe() -> tuple[list[str], Path]:
    """gunicorn's command line and the directory it runs in, from the installed server."""
    serve = server_module("serve")
    if serve is None:
        raise ServerNotInstalled(NOT_INSTALLED)
    root = Path(serve.ROOT)
    if not (root / "gunicorn.conf.py").is_file():
        raise ServerNotInstalled(
            f"the procwire server is installed without its checkout ({root} has no gunicorn.conf.py): "
            "install it editable from a procwire checkout (pip install -e .)"
        )
    return [*serve.server_command(), "--no-control-socket"], root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _forget(directory: str, log_path: Path | None) -> None:
    if log_path is not None:
        logs.forget(log_path)
    shutil.rmtree(directory, ignore_errors=True)


class LoopbackAddress:
    """The URLs of a server listening on ``127.0.0.1:port``."""

    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(eq=False)  # compared and hashed by identity: one object, one gunicorn
class ProcwireServer(LoopbackAddress):
    """A gunicorn master we start and stop: ``ProcwireServer(env=...).start()``, then ``.url``
    (``ws://``), ``.http``, ``.token`` (the admin ``default``'s), ``.token_of(user)``, ``.stop()``.

    ``env``: ``PROCWIRE_*`` settings and any other variable for the server; ``users``: user names
    and their policies (None: the role's), each with a token made here.  ``stderr``: where its log
    goes; by default a file of its own (``log_path``), removed with the object.
    """

    env: dict[str, str] = field(default_factory=dict)
    token: str = field(default_factory=new_token)
    port: int = field(default_factory=free_port)
    stderr: IO[Any] | None = None
    users: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    DEFAULT_ENV: ClassVar[dict[str, str]] = {}  # under ``env``: a subclass's defaults

    def __post_init__(self) -> None:
        directory = tempfile.mkdtemp(prefix="procwire-test-")  # its state and its log, gone with the object
        self.state_dir = os.path.join(directory, "state")
        os.mkdir(self.state_dir, 0o700)
        self.log_path = Path(directory, "server.log") if self.stderr is None else None
        self.user_tokens = {name: new_token() for name in self.users}
        if self.log_path is not None:
            logs.watch(self.log_path, f"procwire server log (127.0.0.1:{self.port})")
        weakref.finalize(self, _forget, directory, self.log_path)

    def token_of(self, user: str) -> str:
        """The token of a user declared in ``users``."""
        try:
            return self.user_tokens[user]
        except KeyError:
            raise KeyError(
                f"no user {user!r} on this server: declare it before it starts, as "
                f"@pytest.mark.procwire_settings(users={{{user!r}: {{...policy...}}}}) (docs/testing.md)"
            ) from None

    def environment(self) -> dict[str, str]:
        """The server's environment: the caller's without its ``PROCWIRE_*``, then this server's."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(ENV_PREFIX)}
        env.update(
            PROCWIRE_BIND=f"127.0.0.1:{self.port}",
            PROCWIRE_TOKEN=self.token,
            PROCWIRE_STATE_DIR=self.state_dir,
        )
        env.update(self.DEFAULT_ENV)
        env.update(self.env)
        if self.users:
            entries = [user_entry(name, self.user_tokens[name], policy) for name, policy in self.users.items()]
            env["PROCWIRE_TOKENS"] = tokens_setting(env.get("PROCWIRE_TOKENS"), entries)
        return env

    def start(self) -> Self:
        """Start gunicorn and return once ``/healthz`` answers (ServerFailed otherwise, after stopping it)."""
        command, root = server_recipe()
        log = self.stderr if self.log_path is None else self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                command, cwd=root, env=self.environment(), stderr=log, start_new_session=True
            )
        finally:
            if log is not self.stderr and log is not None:
                log.close()  # gunicorn has its own copy
        self._wait_until_healthy()
        return self

    def _wait_until_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(f"procwire exited with {self.process.returncode}{self._log_end()}")
            try:
                with _no_proxy.open(f"{self.http}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ServerFailed(f"procwire did not answer /healthz within {START_TIMEOUT:.0f} s{self._log_end()}")

    def _log_end(self) -> str:
        return f"; its log:\n{logs.read(self.log_path)}" if self.log_path is not None else ""

    @property
    def running(self) -> bool:
        """Started, and its master has not exited."""
        return self.process is not None and self.process.poll() is None

    def worker_pids(self) -> list[int]:
        """gunicorn's workers (the master's children)."""
        assert self.process is not None
        return children_of(self.process.pid)

    def stop(self) -> None:
        """Stop gunicorn gracefully (it ends every process it started), SIGKILL its group if it hangs."""
        if self.process is not None:
            stop_master(self.process)


def stop_master(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a gunicorn master we started (a graceful stop), SIGKILL its group if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=KILL_TIMEOUT)
