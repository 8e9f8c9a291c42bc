"""The development token: the admin token a server makes for itself when
no ``TOKEN`` is configured, kept so that it is the same after a restart.

It lives in ``STATE_DIR/token-<BIND>`` (``~/.local/state/procwire/`` by
default), mode 0600: the console stays logged in and exported variables
stay valid across restarts of ``make run``.  One file per ``BIND``, so two
servers on one machine never share a token by accident.  ``make run
NEW_TOKEN=1`` or ``procwire-token --new-dev-token`` replaces it.  A set
``TOKEN`` wins: then nothing is read or stored.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from config.state import StateError, read_secret, server_file, write_secret

TOKEN_BYTES = 32  # 256 bits, as procwire-token makes them


def dev_token_file(state_dir: str, bind: str) -> Path:
    return server_file(state_dir, bind, "token")


def load_or_create(path: Path) -> tuple[str, bool]:
    """The stored token, or a new one stored now; True when it is new."""
    stored = read_secret(path)
    if stored and stored.strip():
        return stored.strip(), False
    token = secrets.token_urlsafe(TOKEN_BYTES)
    if write_secret(path, token + "\n", replace=stored is not None):  # an empty file is replaced
        return token, True
    stored = (read_secret(path) or "").strip()  # another server of this BIND made it first
    if not stored:
        raise StateError(f"{path} is empty: remove it and start again")
    return stored, False


def regenerate(path: Path) -> str:
    """A new token in place of the stored one (clients holding the old one are refused)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    write_secret(path, token + "\n", replace=True)
    return token
