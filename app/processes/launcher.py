"""Start a child process without running any Python in the child.

The standard library's C helper ``_posixsubprocess.fork_exec`` (app.processes.forkexec) forks (with
vfork where it can) and execs in C, so nothing of this gevent worker runs in
the child: no greenlet copies, no at-fork hooks, and about six times the spawn
rate of ``gevent.subprocess`` (which runs Python between fork and exec).
The child leads a new session, gets the default signal dispositions for the
signals Python ignores, and inherits no descriptor but its three stdio ones.
Each child is also registered with the worker's guardian
(app.processes.guardian_link), which kills its group if the worker dies
along with its master.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pwd
import stat
import struct
import termios
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from gevent.os import nb_read

from app.processes.environment import Environment
from app.processes.forkexec import close_fd, fork_exec
from app.processes.guardian_link import guardian

SETSID = "/usr/bin/setsid"  # util-linux: setsid() and TIOCSCTTY, then exec
SETPRIV = "/usr/bin/setpriv"  # util-linux: change user and groups, then exec
PRLIMIT = "/usr/bin/prlimit"  # util-linux: set resource limits, then exec


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


NOT_IN_PATH = "executable file not found in PATH"


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
    raise FileNotFoundError(errno.ENOENT, NOT_IN_PATH, file)


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
        pid = fork_exec(argv, executable, spec.cwd, spec.env.encoded, stdio, (errpipe_r, errpipe_w), spec.pty is None)
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
