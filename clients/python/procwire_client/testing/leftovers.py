"""After a test: the processes it left running on a server, killed and named.

The server is the authority on what it started: ``/api/processes`` (the admin's view, with the
connection that started each process, if still connected) rather than ``/proc``, where a worker's
children include its guardian (app/processes/guardian.py) and pids say nothing of who started what.
A process whose connection has closed is being stopped by the server (SIGTERM, then SIGKILL after
``KILL_GRACE``): it is waited for, within ``SETTLE_TIMEOUT``.  A kept process whose connection is gone
will not end: it is not waited for.  What still runs then (kept processes, and those of a connection
the test never closed) is stopped by the admin's connection (SIGKILL to its group), released, and
waited for by pid.  Finished kept processes are released too, so that the next test on a shared
server starts with none.

With several workers and no ``REDIS_URL`` each worker has a registry of its own and ``/api/*``
shows one worker's share: leftovers on the others are ended only when the server stops.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from typing import Any

from procwire_client.errors import ProcwireError
from procwire_client.sync_client import Client
from procwire_client.testing.launcher import ProcwireServer
from procwire_client.testing.processes import pid_exists, wait_until

SETTLE_TIMEOUT = 10.0  # seconds for the processes of closed connections to end on their own
GONE_TIMEOUT = 10.0  # seconds for a killed process to be gone from /proc
API_TIMEOUT = 5.0

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LeftoverProcessWarning(UserWarning):
    """A test left processes running on a procwire server; they were killed.  An error with
    ``-W error::procwire_client.testing.LeftoverProcessWarning`` (or ``filterwarnings``)."""


def processes(server: ProcwireServer) -> list[dict[str, Any]]:
    """``/api/processes``: every process of the server (one worker's without ``REDIS_URL``)."""
    request = urllib.request.Request(
        f"{server.http}/api/processes", headers={"Authorization": f"Bearer {server.token}"}
    )
    with _no_proxy.open(request, timeout=API_TIMEOUT) as response:
        listed: list[dict[str, Any]] = json.load(response)["processes"]
        return listed


def _running(server: ProcwireServer) -> list[dict[str, Any]]:
    return [process for process in processes(server) if process["state"] == "running"]


def _settled(process: dict[str, Any]) -> bool:
    """Nothing will end it now: it is kept, and the connection that started it is gone.  Any other
    is being stopped by the server, or will be when its connection is: a closing connection stays
    listed until the server has stopped its processes (app/edge/session.py hangs up first)."""
    return process["on_disconnect"] == "keep" and process["client"] is None


def describe(process: dict[str, Any]) -> str:
    kept = ", kept" if process["on_disconnect"] == "keep" else ""
    return f"pid {process['pid']} ({process['command']}; proc {process['proc']}, owner {process['owner']}{kept})"


def clear(server: ProcwireServer) -> list[str]:
    """End what the last test left on ``server``; the descriptions of the processes that had to be killed."""
    # What is still running after SETTLE_TIMEOUT (a connection the test never closed) is left behind too.
    wait_until(lambda: all(_settled(process) for process in _running(server)), SETTLE_TIMEOUT)
    listed = processes(server)
    left = [process for process in listed if process["state"] == "running"]
    kept = [process for process in listed if process["on_disconnect"] == "keep"]
    if not left and not kept:
        return []
    with Client(server.url, server.token) as admin:
        for process in left:
            with contextlib.suppress(ProcwireError):  # it ended meanwhile
                admin.stop(process["proc"], "SIGKILL")
        for process in kept:
            with contextlib.suppress(ProcwireError):  # released meanwhile
                admin.release(process["proc"])
    return [describe(process) + ("" if _gone(process["pid"]) else ": still alive after SIGKILL") for process in left]


def _gone(pid: int) -> bool:
    return wait_until(lambda: not pid_exists(pid), GONE_TIMEOUT)
