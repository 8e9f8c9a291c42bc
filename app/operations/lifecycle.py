"""Worker lifecycle: end every session cleanly when the worker is told to stop.

WebSockets never finish on their own, so without this a stop or reload waits
the whole ``graceful_timeout`` and then drops clients without a Close frame,
leaving their processes to outlive the worker.  Closing each connection with
1001 makes its session stop its processes and return, so the pool drains.
"""

from __future__ import annotations

from typing import Any

import gevent

from app.registry import registry_of

CLOSE_GOING_AWAY = 1001
POLL_INTERVAL = 0.2


def kill_all_processes(worker: Any) -> None:
    """A quick exit (SIGINT/SIGQUIT, or a worker timeout) leaves no time for a
    grace period: SIGKILL every process group at once, kept ones included."""
    app = getattr(worker, "wsgi", None)  # none when the app failed to load: nothing was started
    if app is None:
        return
    for process in registry_of(app).local_processes():
        process.kill_group()


def close_sessions_when_stopping(worker: Any) -> None:
    """Run in its own greenlet from gunicorn's ``post_worker_init`` hook.

    Sessions stop their own processes as on any disconnect; kept processes,
    which outlive connections but not the worker, are stopped here.
    """
    registry = registry_of(worker.wsgi)
    while worker.alive:
        gevent.sleep(POLL_INTERVAL)
    for client in registry.local_clients():
        client.close(CLOSE_GOING_AWAY, "server shutting down")
    kept = [process for process in registry.local_processes() if process.options.keep]
    gevent.joinall([gevent.spawn(process.terminate) for process in kept])
    # Then until each exit is delivered (its recording closed), as a session waits for its own.
    drain = worker.wsgi.config["PROCWIRE"].DRAIN_TIMEOUT
    gevent.joinall([gevent.spawn(process.wait) for process in kept], timeout=drain + 1)
    registry.close()
