"""A server with a ``user`` token whose policy allows tar, inside one directory (for cp's policy test)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from tests.server import Server
from tests.test_cli_support import cli_env

USER_TOKEN = "cli-user-token-0123456789"


@contextlib.contextmanager
def user_server(base: Path, root: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    """The server and the CLI's environment for the user ``carl``: tar allowed, ``root`` the only cwd root."""
    config = base / "procwire.toml"
    digest = hashlib.sha256(USER_TOKEN.encode()).hexdigest()
    config.write_text(
        f'[policies.user]\nallow = ["/usr/bin/tar"]\ncwd_roots = ["{root}"]\n'
        f'[[tokens]]\nname = "carl"\nrole = "user"\nsha256 = "{digest}"\n'
    )
    server = Server(env={"PROCWIRE_CONFIG": str(config)}, token="cli-admin-token-0123456789").start()
    try:
        yield server, cli_env(server, PROCWIRE_TOKEN=USER_TOKEN)
    finally:
        server.stop()
