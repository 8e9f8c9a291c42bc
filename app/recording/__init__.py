"""Session recording (docs/security.md#recording): what a process wrote, and what it was sent.

A ``start`` (or ``run``) asks for one with ``record`` (``true``, or
``{"input": true}`` to record stdin as well); a policy requires one with
``record`` / ``record_input``.  Terminals are recorded as asciicast v2,
pipes as timed JSON lines (:mod:`.formats`), into ``RECORDINGS_DIR``
(:mod:`.store`), by a :class:`~.recorder.Recorder` that is one more sink of
the process.  ``/api/recordings`` lists and serves them (:mod:`.http`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from app.errors import ErrorCode, RpcError
from app.recording.recorder import Recorder
from app.recording.store import Store, recordings_dir
from app.security import audit

if TYPE_CHECKING:
    from config import Settings

_stores: dict[tuple[str, float, int], Store] = {}


def store_of(settings: Settings) -> Store:
    """This worker's one :class:`Store` per directory (it remembers when it last swept)."""
    directory = recordings_dir(settings.RECORDINGS_DIR, settings.STATE_DIR)
    key = (directory, settings.RECORDINGS_MAX_AGE, settings.RECORDINGS_MAX_BYTES)
    store = _stores.get(key)
    if store is None:
        store = _stores[key] = Store(directory, settings.RECORDINGS_MAX_AGE, settings.RECORDINGS_MAX_BYTES)
    return store


def wanted(asked: Any, required: bool, required_input: bool) -> tuple[bool, bool]:
    """(record, record the input too): what the start asked (``record``: a bool or an object
    with ``input``), or more when the policy requires it."""
    asked_input = bool(getattr(asked, "input", False))
    record = asked not in (None, False) or required or required_input
    return record, record and (asked_input or required_input)


def begin(
    settings: Settings, owner: str, proc: int, command: str, pty: tuple[int, int] | None, *, inputs: bool
) -> Recorder:
    """Open the recording before the launch; a start that cannot be recorded is refused."""
    try:
        return Recorder(store_of(settings), proc, owner, command, pty, inputs=inputs)
    except OSError as error:
        message = f"cannot record this process: {error.strerror or error}"
        audit.event("recording_failed", level=logging.ERROR, token=owner, proc=proc, errno=error.errno, error=message)
        raise RpcError(ErrorCode.SPAWN_FAILED, message, {"errno": error.errno}) from None
