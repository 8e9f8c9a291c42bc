"""Start a child process without running any Python in the child.

The standard library's C helper ``_posixsubprocess.fork_exec`` forks (with
vfork where it can) and execs in C, so nothing of this gevent worker runs in
the child: no greenlet copies, no at-fork hooks, and about six times the spawn
rate of ``gevent.subprocess`` (which runs Python between fork and exec).
The child leads a new session, gets the default signal dispositions for the
signals Python ignores, and inherits no descriptor but its three stdio ones.
Each child is also registered with the worker's guardian (``guardian.py``),
which kills its group if the worker dies along with its master.
"""

from __future__ import annotations

import _posixsubprocess
import _socket
import contextlib
import errno
import fcntl
import logging
import os
import pwd
import stat
import struct
import sys
import termios
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import gevent
from gevent import get_hub
from gevent.monkey import get_original
from gevent.os import nb_read

from app.processes import guardian as guardian_program
from app.processes.environment import Environment

# gevent >= 25.8 patches os.close to defer the close to the loop's next check
# phase; an idle hub then never closes a pipe's write end, and the reader
# waits for an end of file that never comes.  Our descriptors have no watcher
# left when we close them, so close them at once.
close_fd = get_original("os", "close")

SETSID = "/usr/bin/setsid"  # util-linux: setsid() and TIOCSCTTY, then exec
SETPRIV = "/usr/bin/setpriv"  # util-linux: change user and groups, then exec
PRLIMIT = "/usr/bin/prlimit"  # util-linux: set resource limits, then exec
GUARDIAN = os.path.abspath(guardian_program.__file__)
GUARDIAN_RETRY = 60.0  # seconds before starting again a guardian that died at once
READ, WRITE = 1, 2  # libev's EV_READ, EV_WRITE

log = logging.getLogger(__name__)

StdinMode = Literal["pipe", "null"]
StderrMode = Literal["pipe", "stdout", "null"]


@dataclass(frozen=True)
class LaunchSpec:
    """What to run; ``executable`` is already resolved by :func:`lookpath`."""

    argv: list[str]
    executable: str
    env: Environment
    cwd: str | None
    stdin: StdinMode = "pipe"
    stderr: StderrMode = "pipe"
    pty: tuple[int, int] | None = None  # (rows, cols): run on a pseudo-terminal
    rlimits: dict[str, int] = field(default_factory=dict)  # prlimit(1) names: cpu, as, nofile, nproc...
    user: str | None = None  # run as this user (the server must be root)
    group: str | None = None


@dataclass(frozen=True)
class Launched:
    """The parent's ends of the child's pipes (non-blocking), or None.

    On a pseudo-terminal, ``stdout`` and ``stdin`` are two descriptors of the
    master side and ``terminal`` a third, for window-size changes: each has
    its own owner that closes it.
    """

    pid: int
    stdin: int | None
    stdout: int
    stderr: int | None
    terminal: int | None = None


def lookpath(file: str, search_path: str | None, cwd: str | None = None) -> str:
    """Resolve an executable as Go's ``exec.LookPath`` does.

    A name containing a slash is checked as it is (relative to ``cwd``) and
    returned unchanged; a bare name is searched in ``search_path``, whose
    empty entries are skipped (never an implicit search of the working
    directory, as Go 1.19 refuses too).  Raises FileNotFoundError or
    PermissionError, whose errno the protocol reports.
    """
    if "/" in file:
        _check_executable(os.path.join(cwd, file) if cwd else file, file)
        return file
    for directory in (search_path if search_path is not None else os.defpath).split(os.pathsep):
        if not directory:
            continue
        candidate = os.path.join(directory, file)
        try:
            _check_executable(os.path.join(cwd, candidate) if cwd else candidate, candidate)
        except OSError:
            continue
        return candidate
    raise FileNotFoundError(errno.ENOENT, "executable file not found in PATH", file)


def _check_executable(path: str, shown: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), shown) from None
    if stat.S_ISDIR(mode) or not os.access(path, os.X_OK):
        raise PermissionError(errno.EACCES, "not an executable file", shown)


def launch(spec: LaunchSpec, on_forked: Callable[[int], None]) -> Launched:
    """Fork and exec ``spec``; raise the child's OSError if exec failed.

    ``on_forked(pid)`` runs right after the fork and before anything yields,
    so the reaper learns of the pid before the child can be reaped.
    """
    parent_fds: list[int] = []
    child_fds: list[int] = []
    try:
        streams = (
            _terminal_streams(spec, parent_fds, child_fds) if spec.pty else _pipe_streams(spec, parent_fds, child_fds)
        )
        errpipe_r, errpipe_w = _pipe(parent_fds, child_fds, os.O_NONBLOCK)  # at most ~100 bytes: never blocks
        argv, executable = _command(spec)
        stdio = (streams.child_stdin, streams.child_stdout, streams.child_stderr)
        # On a pty, setsid(1) calls setsid() and takes the terminal.
        pid = _fork_exec(argv, executable, spec.cwd, spec.env.encoded, stdio, (errpipe_r, errpipe_w), spec.pty is None)
        on_forked(pid)
        guardian.register(pid)
        _close_all(child_fds)
        parent_fds.remove(errpipe_r)
        _raise_exec_error(_read_all(errpipe_r), spec)
    except BaseException:
        _close_all(child_fds + parent_fds)
        raise
    for fd in parent_fds:
        _set_nonblocking(fd)
    return Launched(pid, streams.stdin, streams.stdout, streams.stderr, streams.terminal)


def _fork_exec(
    argv: list[str],
    executable: str,
    cwd: str | None,
    env: tuple[bytes, ...] | None,
    stdio: tuple[int, int, int],
    errpipe: tuple[int, int],
    setsid: bool,
) -> int:
    """Fork (vfork where it can) and exec in C: stdio is (stdin, stdout,
    stderr), -1 to inherit; ``env`` None inherits this process's environment."""
    stdin, stdout, stderr = stdio
    return _posixsubprocess.fork_exec(
        [os.fsencode(arg) for arg in argv],
        [os.fsencode(executable)],
        True,  # close_fds
        (errpipe[1],),
        cwd,  # type: ignore[arg-type]  # typeshed: str; the C function takes None (no chdir)
        env,  # None inherits this process's environment
        stdin,
        -1,  # the parent's ends are not open in the child anyway (close_fds)
        -1,
        stdout,
        -1,
        stderr,
        errpipe[0],
        errpipe[1],
        True,  # restore_signals
        setsid,  # call_setsid
        -1,  # pgid_to_set
        None,  # gid
        None,  # extra_groups
        None,  # uid
        -1,  # umask
        None,  # type: ignore[arg-type]  # preexec_fn: never (typeshed forgets it may be None)
        True,  # allow_vfork
    )


@dataclass(frozen=True)
class _Streams:
    child_stdin: int
    child_stdout: int
    child_stderr: int
    stdin: int | None
    stdout: int
    stderr: int | None
    terminal: int | None = None


def _pipe_streams(spec: LaunchSpec, parent_fds: list[int], child_fds: list[int]) -> _Streams:
    stdin_r, stdin_w = _child_input(spec.stdin, parent_fds, child_fds)
    stdout_r, stdout_w = _pipe(parent_fds, child_fds)
    stderr_r, stderr_w = _child_error(spec.stderr, stdout_w, parent_fds, child_fds)
    return _Streams(stdin_r, stdout_w, stderr_w, stdin_w, stdout_r, stderr_r)


def _terminal_streams(spec: LaunchSpec, parent_fds: list[int], child_fds: list[int]) -> _Streams:
    """A pseudo-terminal: the slave is the child's stdin, stdout and stderr."""
    assert spec.pty is not None
    master, slave = os.openpty()
    parent_fds.append(master)
    child_fds.append(slave)
    set_window_size(master, *spec.pty)
    writer, terminal = os.dup(master), os.dup(master)
    parent_fds += [writer, terminal]
    return _Streams(slave, slave, slave, writer, master, None, terminal)


def _command(spec: LaunchSpec) -> tuple[list[str], str]:
    """The exec chain: util-linux tools do in C, before the program's exec,
    what Python must never do in a forked child.  ``setsid -c`` makes a pty
    the controlling terminal, ``setpriv`` changes user, ``prlimit`` sets
    resource limits.  Each costs one exec, so each is used only when needed;
    then the program's argv[0] is its resolved path."""
    prefix: list[str] = []
    if spec.pty is not None:
        prefix += [SETSID, "-c"]
    if spec.user or spec.group:
        prefix += [SETPRIV, *_identity_options(spec), "--"]
    if spec.rlimits:
        prefix += [PRLIMIT, *(f"--{name}={value}:{value}" for name, value in sorted(spec.rlimits.items())), "--"]
    if not prefix:
        return spec.argv, spec.executable
    return [*prefix, spec.executable, *spec.argv[1:]], prefix[0]


def _identity_options(spec: LaunchSpec) -> list[str]:
    options = []
    if spec.user:
        options += [f"--reuid={spec.user}", "--init-groups"]
    if spec.group or spec.user:
        options.append(f"--regid={spec.group or _primary_group(spec.user or '')}")
    return options


def _primary_group(user: str) -> int:
    return pwd.getpwnam(user).pw_gid


def set_window_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            close_fd(fd)
    fds.clear()


def _set_nonblocking(fd: int) -> None:
    """One system call: the status flags of a fresh pipe or pty are known to be clear."""
    fcntl.fcntl(fd, fcntl.F_SETFL, os.O_NONBLOCK)


def _pipe(parent_fds: list[int], child_fds: list[int], flags: int = 0) -> tuple[int, int]:
    read_end, write_end = os.pipe2(os.O_CLOEXEC | flags)
    parent_fds.append(read_end)
    child_fds.append(write_end)
    return read_end, write_end


def _null(child_fds: list[int], flags: int) -> int:
    fd = os.open(os.devnull, flags | os.O_CLOEXEC)
    child_fds.append(fd)
    return fd


def _child_input(mode: StdinMode, parent_fds: list[int], child_fds: list[int]) -> tuple[int, int | None]:
    if mode == "null":
        return _null(child_fds, os.O_RDONLY), None
    read_end, write_end = os.pipe()
    child_fds.append(read_end)
    parent_fds.append(write_end)
    return read_end, write_end


def _child_error(
    mode: StderrMode, stdout_w: int, parent_fds: list[int], child_fds: list[int]
) -> tuple[int | None, int]:
    if mode == "stdout":
        return None, stdout_w
    if mode == "null":
        return None, _null(child_fds, os.O_WRONLY)
    return _pipe(parent_fds, child_fds)


def _read_all(fd: int) -> bytes:
    """Read the (non-blocking) exec-error pipe cooperatively until the child execs or dies."""
    data = b""
    try:
        while chunk := nb_read(fd, 4096):
            data += chunk
    finally:
        close_fd(fd)
    return data


def _raise_exec_error(report: bytes, spec: LaunchSpec) -> None:
    """Turn _posixsubprocess's ``OSError:<hex errno>:<where>`` into an OSError."""
    if not report:
        return
    _kind, hex_errno, where = report.split(b":", 2)
    code = int(hex_errno, 16)
    filename = spec.cwd if where == b"noexec" else spec.executable
    raise OSError(code, os.strerror(code), filename)


class Guardian:
    """This worker's side of its guardian process (``guardian.py``), which
    SIGKILLs the worker's process groups if the worker dies with its master.

    Started with the worker's first process and told about every child right
    after its fork: a pidfd (exact even if the pid is later reused) and the
    group id, in one non-blocking ``sendmsg``.  It reports when it has had
    nothing to guard for a while, and is then let go, so an idle worker has
    no child.  Nothing here yields: it runs between the fork and the first
    yield of :func:`launch`, and in the hub's callbacks.
    """

    def __init__(self) -> None:
        self._channel: Any = None  # our end of the SOCK_SEQPACKET socket (a raw _socket.socket)
        self._reader: Any = None  # libev watcher: the guardian's offers, or its end
        self._writer: Any = None  # libev watcher: room for pending registrations
        self._pending: deque[tuple[int, int]] = deque()  # (pidfd, group) the socket had no room for yet
        self._sent = 0
        self._pid = 0
        self._worker = 0  # the pid that started it: a fork inherits no guardian
        self._started_at = 0.0
        self._retry_at = 0.0  # no guardian before: one died at once, or pidfds are not available
        self._former: set[int] = set()  # guardians let go, perhaps not reaped yet

    @property
    def pid(self) -> int | None:
        """The running guardian's pid, if any."""
        return self._pid if self._channel is not None and self._worker == os.getpid() else None

    def register(self, pid: int) -> None:
        """Have ``pid``, a child forked a moment ago, guarded.  Call it before
        anything yields: until the child is reaped its pid is its own."""
        try:
            if self.pid is None:
                self._start()  # registers every child, this one included
            else:
                self._send(os.pidfd_open(pid), pid)  # a pty leader's group is its pid once setsid(1) ran
        except OSError as error:
            if error.errno in (errno.ENOSYS, errno.EPERM):  # no pidfd_open (before Linux 5.3, or seccomp)
                self._let_go()
                self._retry_at = float("inf")
            log.warning("process %d is not guarded against the loss of this worker: %s", pid, error)

    def _start(self) -> None:
        """Start a guardian and register every child of this worker with it."""
        if time.monotonic() < self._retry_at:
            return
        self._let_go()
        worker_end, guardian_end = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        try:
            self._pid = self._spawn(guardian_end.fileno())
        except BaseException:
            worker_end.close()
            raise
        finally:
            guardian_end.close()
        self._channel, self._worker, self._started_at, self._sent = worker_end, os.getpid(), time.monotonic(), 0
        loop = get_hub().loop
        self._reader, self._writer = loop.io(worker_end.fileno(), READ), loop.io(worker_end.fileno(), WRITE)
        self._reader.start(self._read)
        children = _children()
        self._former &= children
        for pidfd, group in _groups_of(children - self._former - {self._pid}):
            self._send(pidfd, group)

    @staticmethod
    def _spawn(channel: int) -> int:
        """The guardian on ``channel`` as its stdin, in a session of its own
        (no terminal's signals), with no environment (nothing of the server's
        secrets).  An exec failure shows as the channel's end, see :meth:`_read`."""
        errpipe_r, errpipe_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        argv = [sys.executable, "-I", "-S", GUARDIAN, str(os.getpid()), str(os.getpgrp())]
        try:
            return _fork_exec(argv, sys.executable, "/", (), (channel, -1, -1), (errpipe_r, errpipe_w), True)
        finally:
            close_fd(errpipe_r)
            close_fd(errpipe_w)

    def _send(self, pidfd: int, group: int) -> None:
        """Queue one registration; it owns ``pidfd`` from here on."""
        self._pending.append((pidfd, group))
        if len(self._pending) == 1:
            self._flush()

    def _flush(self) -> None:
        """Send what the socket has room for; wait to be writable for the rest."""
        while self._pending:
            pidfd, group = self._pending[0]
            try:
                self._channel.sendmsg(
                    [b"%d" % group],
                    [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", pidfd))],
                    _socket.MSG_DONTWAIT | _socket.MSG_NOSIGNAL,
                )
            except BlockingIOError:
                self._writer.start(self._flush)
                return
            except OSError:  # EPIPE: the guardian is gone; the reader sees its end and starts another
                self._writer.stop()
                return
            self._pending.popleft()
            close_fd(pidfd)
            self._sent += 1
        self._writer.stop()

    def _read(self) -> None:
        """In the hub: an offer to exit, taken if nothing was sent since; or the guardian's end."""
        while self._channel is not None:
            try:
                message = self._channel.recv(guardian_program.MESSAGE_SIZE, _socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:
                self._lost()
            elif message == guardian_program.idle_offer(self._sent) and not self._pending:
                self._let_go()

    def _lost(self) -> None:
        """The guardian died (killed, or its exec failed): start another, in
        a greenlet, unless it died at once."""
        lived = time.monotonic() - self._started_at
        self._let_go()
        if lived < 1.0:
            log.error("the guardian exited at once: processes are not guarded for %.0f s", GUARDIAN_RETRY)
            self._retry_at = time.monotonic() + GUARDIAN_RETRY
            return
        log.warning("the guardian exited after %.1f s; starting another", lived)
        gevent.spawn(self._restart)

    def _restart(self) -> None:
        if self.pid is None:
            try:
                self._start()
            except OSError as error:
                log.error("cannot start a guardian: %s", error)

    def _let_go(self) -> None:
        """Close our end: the guardian kills what it still guards (nothing,
        when it offered to exit) and exits; the reaper's sweep reaps it."""
        if self._channel is None:
            return
        for watcher in (self._reader, self._writer):
            watcher.stop()
            watcher.close()
        while self._pending:
            close_fd(self._pending.popleft()[0])
        if self._worker == os.getpid():
            self._former.add(self._pid)
            self._channel.close()
        self._channel = self._reader = self._writer = None


def _children() -> set[int]:
    """This worker's children: the main thread's, the only one that forks
    (and the one the kernel gives adopted orphans to)."""
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as file:
            return {int(child) for child in file.read().split()}
    except OSError:
        return set()


def _groups_of(children: set[int]) -> list[tuple[int, int]]:
    """A pidfd and the group of each child: leaders, and the orphans of their
    groups this worker adopted as a subreaper.  A child still in our own
    group is a pty leader before setsid(1) ran: its group will be its pid."""
    own_group = os.getpgrp()
    found = []
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            group = os.getpgid(child)
            found.append((os.pidfd_open(child), child if group == own_group else group))
    return found


guardian = Guardian()
