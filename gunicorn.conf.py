"""gunicorn settings for procwire, from the same configuration as the app.

Runs in gunicorn's master, before any worker is forked and before gevent
patches anything: it reads ``config/`` only, never the application.
"""

import os
import secrets
import sys

from config import ConfigError, load_settings

try:
    _settings = load_settings()
except ConfigError as _error:
    sys.exit(f"procwire: bad configuration: {_error}")

_token_generated = not _settings.TOKEN
if _token_generated:
    # Generated once here, inherited by every worker.
    os.environ["PROCWIRE_TOKEN"] = secrets.token_urlsafe(32)

bind = [_settings.BIND]
worker_class = "gevent"
workers = _settings.WORKERS  # each worker has its own registry (README)
worker_connections = _settings.WORKER_CONNECTIONS
timeout = 30
graceful_timeout = _settings.GRACEFUL_TIMEOUT  # deploy/procwire.service's TimeoutStopSec must exceed it
max_requests = 0
keepalive = 2
loglevel = _settings.LOG_LEVEL
wsgi_app = "wsgi:app"


def post_worker_init(worker):
    """In the worker, after gevent patched it and the app loaded: close every
    session with 1001 on stop, so their processes are stopped too."""
    import gevent

    from app.lifecycle import close_sessions_when_stopping

    gevent.spawn(close_sessions_when_stopping, worker)


def worker_int(worker):
    """SIGINT/SIGQUIT: the worker exits within 0.1 s, so kill its processes now."""
    from app.lifecycle import kill_all_processes

    kill_all_processes()


def worker_abort(worker):
    """A worker killed for timing out must not leave its processes behind."""
    from app.lifecycle import kill_all_processes

    kill_all_processes()


def worker_exit(server, worker):
    """Last safety net as the worker exits: nothing it started may live on."""
    from app.lifecycle import kill_all_processes

    kill_all_processes()


def when_ready(server):
    """Print a ready-to-use line, as Jupyter does, when the token was generated."""
    if not _token_generated:
        return
    token = os.environ["PROCWIRE_TOKEN"]
    address = _settings.BIND
    print(
        f"procwire is ready: ws://{address}/ws?token={token}\n  or send the header 'Authorization: Bearer {token}'",
        file=sys.stderr,
        flush=True,
    )
