"""The per-user file where ``procwire login`` keeps the server's URL and token.

``$XDG_CONFIG_HOME/procwire/config.ini`` (else ``~/.config/procwire/config.ini``),
an INI file read and written with :mod:`configparser`: the directory is mode
0700, the file 0600, and it is replaced atomically (written beside it, then
renamed), so a reader never sees half a file and the token is never readable
by others, not even for a moment.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

SECTION = "server"
HEADER = "# Written by `procwire login`; `procwire logout` removes it. Holds a secret: keep it mode 0600.\n"


class SettingsError(Exception):
    """The file is there but cannot be read."""


@dataclass(frozen=True)
class Login:
    """What ``procwire login`` stored."""

    url: str
    token: str


def config_path() -> Path:
    """Where the login is kept; ``XDG_CONFIG_HOME`` counts only when absolute (as the XDG spec says)."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return root / "procwire" / "config.ini"


def load() -> Login | None:
    """The stored login, or ``None`` when there is none (or the file lacks a URL or token)."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(config_path(), encoding="utf-8") as file:
            parser.read_file(file)
    except FileNotFoundError:
        return None
    except (OSError, configparser.Error) as error:
        raise SettingsError(f"cannot read {config_path()}: {error}") from None
    url = parser.get(SECTION, "url", fallback="")
    token = parser.get(SECTION, "token", fallback="")
    return Login(url, token) if url and token else None


def save(login: Login) -> Path:
    """Store ``login``, replacing any earlier one; the file's path."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)  # ours alone, even if it existed with looser bits
    parser = configparser.ConfigParser(interpolation=None)
    parser[SECTION] = {"url": login.url, "token": login.token}
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(HEADER)
            parser.write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_directory(path.parent)
    return path


def remove() -> bool:
    """Forget the stored login; whether there was one."""
    try:
        os.unlink(config_path())
    except FileNotFoundError:
        return False
    return True


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
