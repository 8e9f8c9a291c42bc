"""Run the real service for tests: gunicorn, gevent worker, a free loopback port.

One launcher for the suite and for the users' pytest plugin: procwire_client/testing/launcher.py
(docs/testing.md).  ``Server`` is that launcher with the suite's defaults; the helpers the test
modules import from here are the plugin's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from procwire_client.testing.launcher import LoopbackAddress, ProcwireServer, free_port, stop_master
from procwire_client.testing.processes import children_of, pid_exists, wait_until

ROOT = Path(__file__).resolve().parent.parent  # the checkout: the server's working directory

__all__ = ["ROOT", "LoopbackAddress", "Server", "children_of", "free_port", "pid_exists", "stop_master", "wait_until"]


@dataclass(eq=False)
class Server(ProcwireServer):
    """A gunicorn master we started; stopped (and waited for) by ``stop``.  A known admin token, and
    warnings only in its log (a file of its own, shown in a failing test's report) unless ``env`` says."""

    token: str = "test-token"

    DEFAULT_ENV: ClassVar[dict[str, str]] = {"PROCWIRE_LOG_LEVEL": "warning"}
