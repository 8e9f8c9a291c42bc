"""The recordings directory: files, their metadata, listing and retention.

Each recording is two files in ``RECORDINGS_DIR``: its journal
(``<id>.rec``, :mod:`.journal`) and its metadata (``<id>.json``: owner,
process, command, format, times, state, exit status), written when the
recording opens and replaced (write, then rename) when it ends.  The directory is
0700 and every file 0600, owned by the server: a process run as another
user (policy ``user``) can neither read nor change them.

Every worker (and every server of a host) sharing the directory lists the
same recordings.  Retention runs when a recording ends, at most once every
``SWEEP_INTERVAL`` seconds per worker: recordings that ended (or whose worker is
gone) more than ``RECORDINGS_MAX_AGE`` seconds ago are deleted, then the
oldest ones until all of them fit in ``RECORDINGS_MAX_BYTES``.  A
recording still being written is never deleted.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any

import gevent
import orjson

RECORDING_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9]+-[0-9a-f]{8}$")
META = ".json"
JOURNAL = ".rec"
SWEEP_INTERVAL = 2.0  # seconds
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
RECORDING = "recording"  # states: recording, complete, failed, interrupted


def new_id(proc: int) -> str:
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{proc}-{secrets.token_hex(4)}"


def recordings_dir(recordings: str, state: str) -> str:
    """``RECORDINGS_DIR``, or ``STATE_DIR/recordings`` when it is empty."""
    return recordings or os.path.join(state, "recordings")


@dataclass
class Store:
    directory: str
    max_age: float
    max_bytes: int
    _last_sweep: float = 0.0

    def _ensure(self) -> None:
        os.makedirs(self.directory, mode=DIRECTORY_MODE, exist_ok=True)
        if os.stat(self.directory).st_mode & 0o077:
            os.chmod(self.directory, DIRECTORY_MODE)

    def path(self, recording_id: str) -> str:
        """The recording's journal."""
        return os.path.join(self.directory, recording_id + JOURNAL)

    def open(self, recording_id: str) -> int:
        """A new journal, for appending; never an existing file or a symlink."""
        self._ensure()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
        return os.open(self.path(recording_id), flags, FILE_MODE)

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Replace the metadata whole (a reader never sees half of it); on a full disk, where
        the copy finds no room, in place: its own blocks, freed by the truncation, take it."""
        final = os.path.join(self.directory, meta["id"] + META)
        temporary = final + ".tmp"
        data = orjson.dumps(meta)
        try:
            _write_file(temporary, os.O_CREAT, data)
        except OSError as error:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            try:
                _write_file(final, 0, data)
            except FileNotFoundError:
                raise error from None  # a new recording, with no metadata yet: the first error says why
            return
        os.replace(temporary, final)

    def remove(self, recording_id: str) -> None:
        for path in (self.path(recording_id), os.path.join(self.directory, recording_id + META)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def read_meta(self, recording_id: str) -> dict[str, Any] | None:
        """A recording's metadata, with its size and a state that says when its worker is gone."""
        if not RECORDING_ID.match(recording_id):
            return None
        try:
            with open(os.path.join(self.directory, recording_id + META), "rb") as file:
                meta: dict[str, Any] = orjson.loads(file.read())
            meta["bytes"] = os.stat(self.path(recording_id)).st_size
        except (OSError, ValueError, KeyError):
            return None
        if meta.get("state") == RECORDING and not _writer_alive(meta):
            meta["state"] = "interrupted"
        return meta

    def all(self) -> list[dict[str, Any]]:
        """Every recording's metadata, oldest first."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        metas = (self.read_meta(name.removesuffix(META)) for name in names if name.endswith(META))
        return sorted((meta for meta in metas if meta is not None), key=lambda meta: meta["started_at"])

    def sweep_soon(self) -> None:
        """Retention, in the hub's thread pool (a large directory is never read in the hub),
        unless this worker ran it less than ``SWEEP_INTERVAL`` ago."""
        now = time.monotonic()
        if now - self._last_sweep >= SWEEP_INTERVAL:
            self._last_sweep = now
            gevent.get_hub().threadpool.spawn(self.sweep)

    def sweep(self) -> list[str]:
        """Delete what is too old, then the oldest until the rest fits; return their ids."""
        metas = self.all()
        ended = [meta for meta in metas if meta["state"] != RECORDING]
        total = sum(meta["bytes"] for meta in metas)
        deleted = []
        now = time.time()
        for meta in ended:
            too_old = self.max_age and now - (meta.get("ended_at") or meta["started_at"]) > self.max_age
            too_big = self.max_bytes and total > self.max_bytes
            if too_old or too_big:
                self.remove(meta["id"])
                total -= meta["bytes"]
                deleted.append(meta["id"])
        return deleted


def _write_file(path: str, create: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW | create, FILE_MODE)
    try:
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)


def _writer_alive(meta: dict[str, Any]) -> bool:
    """Is the worker writing it still there?  Only known on its own host."""
    if meta.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(meta["writer"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        return True
    return True
