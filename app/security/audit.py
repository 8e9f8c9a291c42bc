"""The audit log: one JSON object per line, per event (docs/security.md).

Events: ``connect``, ``disconnect``, ``start``, ``signal``, ``exit``,
``refused`` and ``close`` (a connection closed by the server for its
conduct), ``disconnect_client`` (an admin's DELETE), and the recordings'
``recording``, ``recording_failed`` and ``recording_fetch``.  Identities appear
by token name; the token itself is never written.  ``AUDIT_LOG`` names a file
(appended to, reopened when logrotate moves it), ``-`` for stderr, or is
empty for no audit log.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

logger = logging.getLogger("procwire.audit")


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "event": record.getMessage(),
            "worker": record.process,
            # Sharing stderr with the JSON server log (LOG_FORMAT=json): tell the lines apart by name.
            "name": record.name,
            "levelname": record.levelname,
        }
        line.update(getattr(record, "audit", {}))
        return orjson.dumps(line, default=str).decode("utf-8")


def configure(destination: str) -> None:
    """Send the audit log to ``destination`` (a path, ``-`` or empty); idempotent."""
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    logger.propagate = False
    logger.setLevel(logging.INFO)
    if not destination:
        logger.disabled = True
        return
    logger.disabled = False
    handler: logging.Handler
    if destination == "-":
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.handlers.WatchedFileHandler(destination, encoding="utf-8")
    handler.setFormatter(JsonLines())
    logger.addHandler(handler)


def event(name: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Write one audit line (a failing write is reported by logging, never raised);
    ``level`` ``logging.ERROR`` for a failure (``levelname``: ``ERROR``)."""
    if not logger.disabled and logger.handlers:
        logger.log(level, name, extra={"audit": fields})
