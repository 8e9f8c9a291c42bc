"""The real nginx for tests: deploy/nginx.conf rendered into a directory of its own.

Only file paths, addresses and, where a test says so, two timeouts change, so
what the tests run is the shipped file.  nginx is started in the foreground
(``daemon off``) on a free loopback port and stopped by its pid.  nginx is
required: ``make test`` installs Debian's package when it runs as root.
Shared by tests/test_deploy.py (one gunicorn) and tests/cluster.py (two).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.server import ROOT, LoopbackAddress, free_port

NGINX_CONF = ROOT / "deploy" / "nginx.conf"
SSO_SNIPPETS = ("nginx-sso.conf", "nginx-sso-endpoints.conf")  # in deploy/, included as /etc/nginx/procwire-sso*.conf
AUTH_SERVICE = "127.0.0.1:4180"  # where the snippets expect oauth2-proxy
START_TIMEOUT = 15.0


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)), None
    )
    if found is None:
        pytest.fail("nginx is required: `make test` installs it when run as root, else `sudo apt-get install nginx`")
    return found


def set_directive(text: str, name: str, *values: str) -> str:
    """Give the one ``name`` directive of the shipped file new values, one
    directive per value in its place (an upstream's ``server``); it must be
    there exactly once."""
    pattern = re.compile(rf"^(?P<indent>[ \t]*){re.escape(name)}[ \t]+[^;{{}}\n]*;", re.MULTILINE)

    def replace(match: re.Match[str]) -> str:
        return "\n".join(f"{match['indent']}{name} {value};" for value in values)

    rendered, count = pattern.subn(replace, text)
    assert count == 1, f"deploy/nginx.conf: expected one `{name}` directive, found {count}"
    return rendered


def render_nginx_conf(
    directory: Path,
    *,
    listen: str | None = None,
    upstream: str | Sequence[str] | None = None,
    read_timeout: str | None = None,
    shutdown_timeout: str | None = None,
    sso: tuple[str, str] | None = None,
) -> Path:
    """deploy/nginx.conf with its files in ``directory``; other changes only
    when asked.  ``upstream`` is one server address or several (round robin);
    ``sso``, (the auth service's address, the proxy secret): the single
    sign-on includes uncommented, the snippets with these two in place."""
    text = NGINX_CONF.read_text()
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    text = set_directive(text, "user", f"{user} {group}")  # ignored, with a warning, unless root
    text = set_directive(text, "pid", str(directory / "nginx.pid"))
    text = set_directive(text, "error_log", f"{directory / 'error.log'} info")
    text = set_directive(text, "access_log", f"{directory / 'access.log'} procwire")
    temp_paths = "".join(
        f"    {kind}_temp_path {directory / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    assert text.count("\nhttp {\n") == 1
    text = text.replace("\nhttp {\n", "\nhttp {\n" + temp_paths)
    if upstream is not None:
        text = set_directive(text, "server", *([upstream] if isinstance(upstream, str) else upstream))
    for name, value in (
        ("listen", listen),
        ("proxy_read_timeout", read_timeout),
        ("worker_shutdown_timeout", shutdown_timeout),
    ):
        if value is not None:
            text = set_directive(text, name, value)
    if sso is not None:
        text = _with_sso(text, directory, *sso)
    path = directory / "nginx.conf"
    path.write_text(text)
    return path


def _with_sso(text: str, directory: Path, auth_address: str, secret: str) -> str:
    for name in SSO_SNIPPETS:
        snippet = (ROOT / "deploy" / name).read_text()
        assert AUTH_SERVICE in snippet or '"CHANGE-ME"' in snippet
        snippet = snippet.replace(AUTH_SERVICE, auth_address).replace('"CHANGE-ME"', f'"{secret}"')
        (directory / name).write_text(snippet)
        installed = f"# include /etc/nginx/{name.replace('nginx-', 'procwire-')};"
        assert installed in text, f"deploy/nginx.conf: no `{installed}`"
        text = text.replace(installed, f"include {directory / name};")
    return text


@dataclass
class Nginx(LoopbackAddress):
    """An nginx master we started (``daemon off``), stopped by its pid."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, conf: Path) -> Nginx:
        command = [nginx_binary(), "-p", str(self.directory), "-c", str(conf), "-e", str(self.directory / "error.log")]
        self.process = subprocess.Popen(
            [*command, "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}:\n{self.error_log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen in time:\n{self.error_log()}")

    def reload(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session: the master and its workers
            self.process.wait(timeout=5)
