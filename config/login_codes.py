"""One-time login codes: a console link that does not carry the token.

``make run`` prints ``http://HOST:PORT/?code=<code>``; the page posts the
code to ``/console/redeem`` and gets the token back, once.  A code is good
for one redemption within ``CODE_LIFETIME`` seconds, whichever worker of the
server answers: each code is a file (named by the code's SHA-256, so the
code never reaches a path) in ``STATE_DIR/login-<BIND>/``, a 0700
directory emptied at every start.  Redeeming unlinks the file: of several
requests with one code, exactly one unlink succeeds.  The file is empty;
the token handed out is the server's own ``TOKEN``.
"""

from __future__ import annotations

import enum
import hashlib
import os
import secrets
import shutil
import time
from pathlib import Path

from config.state import private_directory, server_file

CODE_LIFETIME = 600.0  # seconds
CODE_BYTES = 16  # 128 bits: guessing is hopeless; failures are rate-limited anyway
MAX_CODE_LENGTH = 64


class Redeemed(enum.Enum):
    OK = "ok"
    UNKNOWN = "unknown"  # never issued, or already used
    EXPIRED = "expired"


class CodeStore:
    """The codes of one server, shared by all its workers through the file system."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def of(cls, state_dir: str, bind: str) -> CodeStore:
        return cls(server_file(state_dir, bind, "login"))

    def reset(self) -> None:
        """At start: no code of an earlier run stays valid."""
        shutil.rmtree(self.directory, ignore_errors=True)
        private_directory(self.directory)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def issue(self) -> str:
        code = secrets.token_urlsafe(CODE_BYTES)
        fd = os.open(self._path(code), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)
        return code

    def redeem(self, code: str, now: float | None = None) -> Redeemed:
        if not code or len(code) > MAX_CODE_LENGTH:
            return Redeemed.UNKNOWN
        path = self._path(code)
        try:
            issued = path.stat().st_mtime
            path.unlink()  # the one atomic step: a second redemption finds nothing
        except FileNotFoundError:
            return Redeemed.UNKNOWN
        if (time.time() if now is None else now) - issued > CODE_LIFETIME:
            return Redeemed.EXPIRED
        return Redeemed.OK

    def _path(self, code: str) -> Path:
        return self.directory / hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()
