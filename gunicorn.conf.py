"""gunicorn settings for procwire, from the same configuration as the app.

Runs in gunicorn's master, before any worker is forked and before gevent
patches anything: it reads ``config/`` only, never the application.
"""

import atexit
import contextlib
import ctypes
import gc
import hashlib
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time

from gunicorn.util import parse_address

from config import ConfigError, load_settings
from config.login_codes import CodeStore
from config.startup import (
    Announcement,
    create_private_file,
    resolve_access,
    stderr_is_journal,
    terminal_audit_file,
)
from config.state import StateError

try:
    _settings = load_settings()
except ConfigError as _error:
    sys.exit(f"procwire: bad configuration: {_error}")

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

if _settings.LOG_FORMAT == "json":
    _json_handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    _level = _settings.LOG_LEVEL.upper()
    _JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "pythonjsonlogger.json.JsonFormatter", "format": _JSON_FIELDS}},
        "handlers": {"json": _json_handler},
        "root": {"level": _level, "handlers": ["json"]},
        "loggers": {
            "gunicorn.error": {"level": _level, "handlers": ["json"], "propagate": False},
            "gunicorn.access": {"level": _level, "handlers": ["json"], "propagate": False},
        },
    }

# -- several servers on one machine: no shared path (docs/deploy.md) ----


def _control_socket_path(bind):
    """gunicorn's default control socket is one path per user
    ($XDG_RUNTIME_DIR/gunicorn.ctl, else ~/.gunicorn/gunicorn.ctl): a second
    server would take it over from the first.  The same directory, one name
    per BIND.  ``--control-socket`` (deploy/procwire.service) overrides it."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    directory = runtime if runtime and os.path.isdir(runtime) else os.path.join(os.path.expanduser("~"), ".gunicorn")
    name = re.sub(r"[^A-Za-z0-9.-]+", "_", bind.removeprefix("unix:")).strip("_")
    if len(name) > 48:  # a UNIX socket path must fit in 108 bytes
        name = hashlib.sha256(bind.encode()).hexdigest()[:16]
    return os.path.join(directory, f"procwire-{name}.ctl")


def _remove_in_master(path, master):
    """At the master's exit only: workers run the same atexit handlers."""
    if os.getpid() == master:
        shutil.rmtree(path, ignore_errors=True)


control_socket = _control_socket_path(_settings.BIND)

# Several workers on TCP: gunicorn (>= 23) then makes each worker bind a
# socket of its own with SO_REUSEPORT, and the kernel spreads connections
# over them by hash.  On the one socket inherited from the master, each
# connection wakes every worker and the first to accept takes it, so the
# shares follow scheduling (docs/deploy.md has the measurement).  Not for
# unix: binds (each worker would replace the previous one's socket file) nor
# fd:// ones.  The master then holds no socket: a second server given the
# same BIND would bind too and share its connections instead of failing.
_address = parse_address(_settings.BIND)
reuse_port = _settings.WORKERS > 1 and isinstance(_address, tuple)

if _settings.WORKERS > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    # Several workers: each writes its metrics here and /metrics sums them.
    # One directory per server, removed when its master exits.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="procwire-metrics-")
    atexit.register(_remove_in_master, os.environ["PROMETHEUS_MULTIPROC_DIR"], os.getpid())


PR_SET_CHILD_SUBREAPER = 36


def on_starting(server):
    """Make the master a child subreaper: the processes of a worker that dies
    (even by SIGKILL, when no worker code runs) are adopted by the master,
    and ``child_exit`` stops them.  With ``reuse_port`` the master binds
    nothing, so check here that no other server holds the address.  Then
    settle the admin token and the audit log (config/startup.py): set in the
    environment here, they reach every worker."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if reuse_port:
        _refuse_an_address_in_use(_address)
    _settle_access_and_audit()


# What when_ready prints, once the server listens; set in the master before
# any worker is forked, so each worker has its copy (post_worker_init).
_announcement = None
_announcement_text = ""
_codes = CodeStore.of(_settings.STATE_DIR, _settings.BIND)


def _settle_access_and_audit():
    """Before any worker: a state file procwire must not use stops the start with one line."""
    global _announcement
    try:
        access = resolve_access(_settings)
        audit_file = terminal_audit_file(_settings, sys.stderr.isatty())
        if audit_file is not None:
            create_private_file(audit_file)
        _codes.reset()
    except (StateError, OSError) as error:
        sys.exit(f"procwire: {error}")
    atexit.register(_remove_in_master, str(_codes.directory), os.getpid())
    if access.token is not None and not _settings.TOKEN:
        os.environ["PROCWIRE_TOKEN"] = access.token  # the development token, for every worker
    if audit_file is not None:
        os.environ["PROCWIRE_AUDIT_LOG"] = str(audit_file)
    _announcement = Announcement(_settings, access, audit_file=audit_file, journal=stderr_is_journal(os.environ))


def _refuse_an_address_in_use(address):
    """Bind once without SO_REUSEPORT: a server already listening there (even
    one whose workers share the port) makes it fail, as a plain bind would."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn: TIME_WAIT is no conflict
        try:
            probe.bind(address)
        except OSError as error:
            sys.exit(f"procwire: cannot listen on {_settings.BIND}: {error.strerror}")


def child_exit(server, worker):
    """A worker is gone: SIGKILL every process group it left behind.  Each of
    our processes leads its own group; the master's own group is never hit.
    The arbiter reaps the adopted processes as they die."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
    _kill_adopted(server)


WORKER_DEATH_TIMEOUT = 5.0  # seconds on_exit waits for a SIGKILLed worker to die (not in state D)
ADOPTED_DEATH_TIMEOUT = 2.0  # seconds on_exit waits to reap what it killed


def on_exit(server):
    """The master is about to exit.  At the end of ``graceful_timeout`` the
    arbiter SIGKILLs the workers still running but reaps only those already
    dead, so ``child_exit`` never runs for the others and their processes
    would be left to init.  Reap those workers (bounded), kill every process
    the master adopted, and reap it too."""
    for pid, worker in list(server.WORKERS.items()):
        if _reaped([pid], WORKER_DEATH_TIMEOUT):  # its children are ours once it is a zombie
            server.WORKERS.pop(pid, None)
            child_exit(server, worker)
    _reaped(_kill_adopted(server), ADOPTED_DEATH_TIMEOUT)


def _kill_adopted(server):
    """SIGKILL every child of the master that is not one of its workers, and
    its group: processes of dead workers (each leads its own group) and their
    guardians.  Never the master's own group, nor a new master started by
    USR2, nor gunicorn's dirty arbiter."""
    spared = set(server.WORKERS) | {server.reexec_pid, getattr(server, "dirty_arbiter_pid", 0)}
    adopted = _children_of_master() - spared
    for pid in adopted:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            group = os.getpgid(pid)
            if group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)
    return adopted


def _reaped(pids, timeout):
    """Reap ``pids``, children of the master, within ``timeout``; True if all were."""
    left = set(pids)
    deadline = time.monotonic() + timeout
    while True:
        for pid in list(left):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    left.discard(pid)
            except ChildProcessError:
                left.discard(pid)
        if not left or time.monotonic() >= deadline:
            return not left
        time.sleep(0.01)


def _children_of_master():
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as file:
            return {int(child) for child in file.read().split()}
    except OSError:
        return set()


def post_fork(server, worker):
    """In the new worker, before gevent's patching and before it installs its
    own signal handlers: until then it has copies of the master's, which only
    queue a signal for a loop that never runs here, so a stop during that
    boot was lost and the master waited the whole GRACEFUL_TIMEOUT.  A
    worker that has not booted has no session to close: let TERM, INT and
    QUIT end it at once (the worker's own handlers replace these)."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_DFL)


def post_worker_init(worker):
    """In the worker, after gevent patched it and the app loaded: close every
    session with 1001 on stop, so their processes are stopped too."""
    import gevent

    from app.operations.lifecycle import close_sessions_when_stopping

    gevent.spawn(close_sessions_when_stopping, worker)
    _announce(worker)
    # The app is loaded: leave its long-lived objects out of every future
    # collection, so the collector only walks what requests create, and
    # collect the youngest generation less often (each spawn makes a few
    # hundred short-lived objects).
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def worker_int(worker):
    """SIGINT/SIGQUIT: the worker exits within 0.1 s, so kill its processes now."""
    from app.operations.lifecycle import kill_all_processes

    kill_all_processes(worker)


def worker_abort(worker):
    """A worker killed for timing out must not leave its processes behind."""
    from app.operations.lifecycle import kill_all_processes

    kill_all_processes(worker)


def worker_exit(server, worker):
    """Last safety net as the worker exits: nothing it started may live on."""
    from app.operations.lifecycle import kill_all_processes

    kill_all_processes(worker)


def when_ready(server):
    """The server listens: issue the one-time login code and write the block
    that the last worker of the first batch prints (post_worker_init)."""
    global _announcement_text
    if _announcement is None:
        return
    if _announcement.access.token is not None and not _announcement.journal:
        _announcement.code = _codes.issue()
    _announcement_text = _announcement.render()


def _announce(worker):
    """Printed last, after every worker's boot line and the master's own:
    by the last worker forked at start, once its app is loaded.  One write,
    so that no other line cuts through it."""
    if _announcement_text and worker.age == _settings.WORKERS:
        sys.stderr.flush()
        os.write(sys.stderr.fileno(), _announcement_text.encode("utf-8", "replace"))
