"""Files a server keeps in ``STATE_DIR``: one set per ``BIND``, private to its user.

Two servers on one machine (two ``BIND`` values) share none of them: each
has its own development token and its own one-time login codes.  The
directory is made ``0700`` when procwire creates it; files holding a secret
are ``0600`` and are refused when others could read them.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path


class StateError(Exception):
    """A state file procwire must not use as it is; the message says what to do."""


def server_file(state_dir: str, bind: str, kind: str) -> Path:
    """``STATE_DIR/<kind>-<BIND>``, ``BIND`` spelt as a file name (as app/cluster/ids.py does)."""
    return Path(state_dir) / f"{kind}-{re.sub(r'[^A-Za-z0-9_.-]', '_', bind)}"


def private_directory(path: Path) -> Path:
    """Create ``path`` (and its parents) with mode 0700 when missing; an
    existing directory is left as it is (the unit's StateDirectory, say)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def read_secret(path: Path) -> str | None:
    """The text of a secret file, or None when there is none.  A symlink, a
    file of another user or one that others may read is refused: its
    secret may be known to them."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StateError(f"cannot read {path}: {error.strerror}") from None
    with os.fdopen(fd, encoding="utf-8") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise StateError(
                f"{path} is not a private file of this user (mode {stat.S_IMODE(info.st_mode):04o}): "
                "its secret may be known to others; remove it and start again"
            )
        return file.read()


def write_secret(path: Path, text: str, *, replace: bool) -> bool:
    """Write ``text`` to ``path`` with mode 0600, atomically: the whole file
    or nothing.  Without ``replace`` an existing file is kept (False)."""
    private_directory(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        if replace:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path)  # fails if another server made it meanwhile
        except FileExistsError:
            return False
        return True
    finally:
        temporary.unlink(missing_ok=True)
