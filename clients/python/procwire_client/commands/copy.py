"""``cp``: files and directories to and from the server, as ``kubectl cp`` does it.

A ``tar`` started on the server does the remote side: ``tar -x`` fed with
binary stdin frames to upload, ``tar -c`` read as binary output to download.
The local side is :mod:`tarfile` in stream mode, so a large tree never sits in
memory.  Where things land follows ``cp -r``: into an existing directory under
the source's name, else as the target's name.  The server's ``cwd`` check
tells what the remote path is (a directory, something else, nothing) without
running anything but ``tar``, so a token whose policy allows ``tar`` in its
``cwd_roots`` can copy there and nowhere else.
"""

from __future__ import annotations

import argparse
import errno
import io
import os
import posixpath
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

from procwire_client import Client, Process
from procwire_client.commands.common import (
    EXIT_CANNOT_EXECUTE,
    EXIT_NO_SUCH_FILE,
    EXIT_NOT_A_DIRECTORY,
    EXIT_NOT_FOUND,
    EXIT_UNSAFE_PATH,
    CommandError,
    UsageError,
    add_command,
    connect,
)
from procwire_client.errors import NotFound, PermissionDenied, ProcessExited, ProcwireConnectionError
from procwire_client.progress import Progress

EXTRACT = ["tar", "-x", "-p", "--no-same-owner", "-f", "-"]
CREATE = ["tar", "-c", "-f", "-", "--format=posix", "--"]
CHUNK = 64 * 1024
PERMISSION_BITS = 0o777  # kept exactly; setuid, setgid and sticky bits are not carried over
WHAT_TO_SAY = {
    errno.ENOENT: (EXIT_NO_SUCH_FILE, "no such file or directory"),
    errno.ENOTDIR: (EXIT_NOT_A_DIRECTORY, "not a directory"),
}


def register(commands: Any, common: list[argparse.ArgumentParser]) -> None:
    cp = add_command(
        commands,
        "cp",
        common,
        "copy files to or from the server (':' marks its side)",
        "Copy a file or a directory tree between here and the server; a leading ':' marks the server's\n"
        "path (relative paths there start in the server's working directory).  Like cp -r: into an\n"
        "existing directory under the source's name, otherwise to the target's name.  Bytes, permission\n"
        "bits and modification times are kept (not owners, nor setuid/setgid/sticky bits).  Runs tar on\n"
        "the server, within the token's policy.  Shows its progress when stderr is a terminal.",
        """
procwire cp ./site :/srv/www          # /srv/www/site if /srv/www exists, else /srv/www
procwire cp notes.txt :               # into the server's working directory
procwire cp :/var/log/app.log ./      # ./app.log
procwire cp :/srv/data ./backup       # the whole tree
""",
    )
    cp.add_argument("source", help="a local path, or :PATH on the server")
    cp.add_argument("target", help="a local path, or :PATH on the server")
    cp.set_defaults(handler=cmd_cp)


def cmd_cp(args: argparse.Namespace) -> int:
    remote_source, remote_target = args.source.startswith(":"), args.target.startswith(":")
    if remote_source == remote_target:
        raise UsageError("mark the server's side, and only it, with a leading ':' (procwire cp ./dir :/srv/dir)")
    try:
        if remote_target:
            local = _local_source(args.source)
            with connect(args) as client:
                upload(client, local, args.target[1:])
        else:
            with connect(args) as client:
                download(client, args.source[1:], os.path.normpath(args.target))
    except ProcwireConnectionError:
        raise
    except OSError as error:  # a local file we cannot read or write
        where = f"{error.filename}: " if error.filename else ""
        raise CommandError(f"cp: {where}{error.strerror or error}") from None
    return 0


# -- the server's side ---------------------------------------------------------------------


def _start_tar(client: Client, argv: list[str], remote_dir: str, shown: str, **params: Any) -> Process | int:
    """``tar`` started in ``remote_dir``; the errno instead when that is missing (ENOENT) or not a directory."""
    try:
        return client.start(argv, cwd=remote_dir or None, binary=True, name="procwire cp", **params)
    except NotFound as error:
        raise CommandError(f"cp: tar is not installed on the server ({error})", EXIT_NOT_FOUND) from None
    except PermissionDenied as error:
        data = error.data if isinstance(error.data, dict) else {}
        if data.get("field") == "cwd" and data.get("errno") in WHAT_TO_SAY:
            return int(data["errno"])
        raise CommandError(f"cp: {shown}: refused by the server: {error}", EXIT_CANNOT_EXECUTE) from None


def _missing(shown: str, problem: int) -> CommandError:
    code, text = WHAT_TO_SAY[problem]
    return CommandError(f"cp: {shown}: {text}", code)


def _parent_and_name(remote: str) -> tuple[str, str]:
    path = posixpath.normpath(remote) if remote else "."
    return posixpath.dirname(path), posixpath.basename(path)


def _finish(process: Process, what: str, reader: _OutputReader | None = None) -> None:
    """Wait for the remote tar; its complaint, if it failed, as one line."""
    errors = reader.errors if reader is not None else bytearray()
    for stream, data in reader.output if reader is not None else process:
        if stream == "stderr":
            errors += data
    status = process.exit_status
    if status is None or status.exit_code:
        lines = errors.decode("utf-8", "replace").strip().splitlines()
        detail = lines[0] if lines else f"tar exited with {status.exit_code if status else 'no status'}"
        raise CommandError(f"cp: {what} failed on the server: {detail}")


# -- upload --------------------------------------------------------------------------------


def _local_source(path: str) -> str:
    if not os.path.lexists(path):
        raise CommandError(f"cp: {path}: no such file or directory", EXIT_NO_SUCH_FILE)
    return os.path.realpath(path)  # a symlink named on the command line is followed, as scp does


def upload(client: Client, local: str, remote: str) -> None:
    shown = ":" + remote
    name = os.path.basename(local) or "."
    started = _start_tar(client, EXTRACT, remote, shown)
    if isinstance(started, int):  # not an existing directory: the target's name, in its parent
        if started == errno.ENOTDIR and os.path.isdir(local):
            raise _missing(shown, errno.ENOTDIR)
        parent, name = _parent_and_name(remote)
        started = _start_tar(client, EXTRACT, parent, ":" + (parent or "."))
        if isinstance(started, int):
            raise _missing(":" + (parent or "."), started)
    progress = Progress(f"{os.path.basename(local)} -> {shown}")
    try:
        with tarfile.open(fileobj=_StdinWriter(started, progress), mode="w|", bufsize=CHUNK) as archive:
            archive.add(local, arcname=name)
        started.close_stdin()
    except ProcessExited:
        pass  # tar stopped reading: its complaint says why
    finally:
        progress.finish()
    _finish(started, "extracting")


class _StdinWriter(io.RawIOBase):
    """What tarfile writes, as binary stdin frames to the remote tar."""

    def __init__(self, process: Process, progress: Progress) -> None:
        self.process = process
        self.progress = progress

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.process.write(bytes(data), binary=True)
        self.progress.add(len(data))
        return len(data)


# -- download ------------------------------------------------------------------------------


def download(client: Client, remote: str, local: str) -> None:
    shown = ":" + remote
    parent, name = _parent_and_name(remote)
    started = _start_tar(client, [*CREATE, "."], remote, shown, stdin="null")  # a directory: its contents
    top = "."
    if isinstance(started, int):  # not a directory: the file itself, from its parent
        if started == errno.ENOENT:
            raise _missing(shown, started)
        started = _start_tar(client, [*CREATE, name], parent, shown, stdin="null")
        if isinstance(started, int):
            raise _missing(shown, started)
        top = name
    destination, new_top = _local_place(local, name, top == ".")  # an error closes the connection: tar ends
    progress = Progress(f"{shown} -> {local}")
    reader = _OutputReader(iter(started), progress)
    try:
        with tarfile.open(fileobj=reader, mode="r|", bufsize=CHUNK) as archive:
            archive.extractall(destination, filter=_extraction_filter(top, new_top))
    except tarfile.FilterError as error:
        raise CommandError(f"cp: refusing {error.tarinfo.name!r}: {error}", EXIT_UNSAFE_PATH) from None
    except tarfile.ReadError:
        pass  # no archive came: tar's complaint says why
    finally:
        progress.finish()
    _finish(started, "archiving", reader)


def _local_place(local: str, remote_name: str, remote_is_directory: bool) -> tuple[str, str]:
    """The directory to extract into and the name the remote top gets there (``cp -r``'s rules)."""
    if os.path.isdir(local):
        return local, remote_name or "."
    if remote_is_directory and os.path.lexists(local):
        raise CommandError(f"cp: {local}: not a directory", EXIT_NOT_A_DIRECTORY)
    parent = os.path.dirname(local) or "."
    if not os.path.isdir(parent):
        problem = errno.ENOTDIR if os.path.lexists(parent) else errno.ENOENT
        raise _missing(parent, problem)
    return parent, os.path.basename(local)


def _extraction_filter(top: str, new_top: str) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]:
    """tarfile's ``data`` filter (nothing outside the target, no absolute or escaping links, no
    devices), the remote top renamed, and the permission bits kept (``data`` would loosen them)."""

    def renamed(name: str) -> str:
        path = posixpath.normpath(name)
        if path == top:
            return new_top
        prefix = "" if top == "." else top + "/"
        if path.startswith(prefix) and not path.startswith("/"):
            return posixpath.normpath(posixpath.join(new_top, path[len(prefix) :]))
        return name  # not under the top: the data filter judges it as it is

    def apply(member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo | None:
        linkname = renamed(member.linkname) if member.islnk() else member.linkname
        member = member.replace(name=renamed(member.name), linkname=linkname, deep=False)
        safe = tarfile.data_filter(member, destination)
        if safe is None or member.issym():
            return safe
        return safe.replace(mode=member.mode & PERMISSION_BITS, deep=False)

    return apply


class _OutputReader(io.RawIOBase):
    """The remote tar's stdout as a file for tarfile; its stderr kept for ``_finish``."""

    def __init__(self, output: Iterator[tuple[str, bytes]], progress: Progress) -> None:
        self.output = output
        self.progress = progress
        self.pending = memoryview(b"")
        self.errors = bytearray()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            item = next(self.output, None)
            if item is None:
                return 0
            if item[0] == "stderr":
                self.errors += item[1]
            else:
                self.pending = memoryview(item[1])
                self.progress.add(len(item[1]))
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size
