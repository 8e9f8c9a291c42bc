"""The name of this node: one gunicorn worker of one server on one host."""

from __future__ import annotations

import os
import socket


def node_name(bind: str) -> str:
    """``<hostname>:<BIND's port (or socket path)>:<worker pid>``: unique per
    worker, even for two servers on one machine."""
    return f"{socket.gethostname()}:{bind.rsplit(':', 1)[-1]}:{os.getpid()}"
