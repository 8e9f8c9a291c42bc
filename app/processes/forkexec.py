"""The two system-level primitives every child start uses, with no Python in the child.

``fork_exec`` is CPython's C helper ``_posixsubprocess.fork_exec`` (vfork
where it can, then exec), with only the arguments procwire varies;
``close_fd`` closes a descriptor at once.  Shared by the launcher and the
guardian link.
"""

from __future__ import annotations

import _posixsubprocess
import os

from gevent.monkey import get_original

# gevent >= 25.8 patches os.close to defer the close to the loop's next check
# phase; an idle hub then never closes a pipe's write end, and the reader
# waits for an end of file that never comes.  Our descriptors have no watcher
# left when we close them, so close them at once.
close_fd = get_original("os", "close")


def fork_exec(
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
