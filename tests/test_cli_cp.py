"""``procwire cp`` both ways through the real server's tar: bytes, modes and times kept, errors said in one line."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import Server
from tests.test_cli_security_support import user_server
from tests.test_cli_support import (
    BOUND,
    COMMAND,
    Terminal,
    cli_env,
    one_line,
    opened_terminals,
    procwire,
    procwire_line,
)

MTIME_NS = 1_600_000_000_500_000_000  # a whole half second: exact in tar's decimal and Python's float


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    yield from opened_terminals()


def make_tree(root: Path) -> Path:
    """Files of every kind cp keeps: binary bytes, odd modes, an empty directory, a relative symlink."""
    tree = root / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "empty").mkdir()
    (tree / "data.bin").write_bytes(os.urandom(3 << 20) + bytes(range(256)))  # larger than the stdin window
    (tree / "sub" / "script.sh").write_text("#!/bin/sh\necho hi\n")
    (tree / "sub" / "deeper" / "secret").write_text("only mine\n")
    (tree / "link").symlink_to("sub/script.sh")
    os.chmod(tree / "sub" / "script.sh", 0o751)
    os.chmod(tree / "sub" / "deeper" / "secret", 0o600)
    os.chmod(tree / "sub" / "deeper", 0o750)
    os.chmod(tree / "empty", 0o775)
    for path in [*tree.rglob("*"), tree]:
        if not path.is_symlink():
            os.utime(path, ns=(MTIME_NS, MTIME_NS))
    return tree


def snapshot(top: Path) -> dict[str, tuple[str, int, int, str]]:
    """Every entry under ``top``: kind, permission bits, mtime (ns) and content digest or link target."""
    found: dict[str, tuple[str, int, int, str]] = {}
    for path in sorted([top, *top.rglob("*")]):
        info = path.lstat()
        if path.is_symlink():
            found[str(path.relative_to(top))] = ("link", 0, 0, os.readlink(path))
            continue
        kind = "dir" if path.is_dir() else "file"
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if kind == "file" else ""
        found[str(path.relative_to(top))] = (kind, stat.S_IMODE(info.st_mode), info.st_mtime_ns, digest)
    return found


def cp(server: Server, *args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return procwire(server, "cp", *args, **kwargs)


# -- both ways --------------------------------------------------------------------------------------


def test_a_tree_goes_up_and_comes_back_exactly(server: Server, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "local")
    remote = tmp_path / "remote"  # the server runs on this machine: its files are ours to check
    remote.mkdir()
    up = cp(server, str(tree), f":{remote}")  # an existing directory: the tree goes in under its name
    assert (up.returncode, up.stdout, up.stderr) == (0, b"", b""), up.stderr
    assert snapshot(remote / "tree") == snapshot(tree)

    renamed = cp(server, str(tree), f":{remote}/copy")  # a new name: the tree becomes it
    assert renamed.returncode == 0, renamed.stderr
    assert snapshot(remote / "copy") == snapshot(tree)

    back = tmp_path / "back"
    back.mkdir()
    down = cp(server, f":{remote}/copy", str(back))
    assert (down.returncode, down.stdout, down.stderr) == (0, b"", b""), down.stderr
    assert snapshot(back / "copy") == snapshot(tree)
    again = cp(server, f":{remote}/copy", str(back / "again"))
    assert again.returncode == 0, again.stderr
    assert snapshot(back / "again") == snapshot(tree)


def test_single_files_both_ways_and_over_an_existing_file(server: Server, tmp_path: Path) -> None:
    source = tmp_path / "notes.txt"
    source.write_bytes(b"first\n\xff\x00")
    os.chmod(source, 0o640)
    os.utime(source, ns=(MTIME_NS, MTIME_NS))
    remote = tmp_path / "remote"
    remote.mkdir()
    assert cp(server, str(source), f":{remote}").returncode == 0
    assert snapshot(remote / "notes.txt") == snapshot(source)
    (remote / "other.txt").write_text("to be replaced, longer than the new content\n")
    assert cp(server, str(source), f":{remote}/other.txt").returncode == 0
    assert snapshot(remote / "other.txt") == snapshot(source)
    local = tmp_path / "down.txt"
    done = cp(server, f":{remote}/other.txt", str(local))
    assert done.returncode == 0, done.stderr
    assert snapshot(local) == snapshot(source)


def test_a_relative_server_path_starts_in_the_servers_working_directory(server: Server, tmp_path: Path) -> None:
    source = tmp_path / "relative.txt"
    source.write_text("here\n")
    env = cli_env(server)
    done = subprocess.run([*COMMAND, "cp", str(source), ":"], env=env, capture_output=True, timeout=BOUND, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    from tests.server import ROOT  # the server's working directory

    copied = ROOT / "relative.txt"
    try:
        assert copied.read_text() == "here\n"
    finally:
        copied.unlink(missing_ok=True)


# -- errors: one line, a distinct exit code -----------------------------------------------------------


def test_missing_paths_exit_3(server: Server, tmp_path: Path) -> None:
    local = cp(server, str(tmp_path / "nope"), f":{tmp_path}")
    assert local.returncode == 3 and "nope: no such file or directory" in one_line(local.stderr)
    remote = cp(server, f":{tmp_path}/nope", str(tmp_path / "x"))
    assert remote.returncode == 3 and f":{tmp_path}/nope: no such file or directory" in one_line(remote.stderr)
    source = tmp_path / "file"
    source.write_text("x")
    no_parent = cp(server, str(source), f":{tmp_path}/missing/dir/file")
    assert no_parent.returncode == 3 and "missing/dir: no such file or directory" in one_line(no_parent.stderr)
    local_parent = cp(server, f":{source}", str(tmp_path / "missing" / "file"))
    assert local_parent.returncode == 3 and "missing: no such file or directory" in one_line(local_parent.stderr)


def test_not_a_directory_exits_4(server: Server, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    onto_file = cp(server, str(tmp_path / "dir"), f":{tmp_path}/file")
    assert onto_file.returncode == 4 and "file: not a directory" in one_line(onto_file.stderr)
    under_file = cp(server, str(tmp_path / "file"), f":{tmp_path}/file/x")
    assert under_file.returncode == 4 and "not a directory" in one_line(under_file.stderr)
    down_onto_file = cp(server, f":{tmp_path}/dir", str(tmp_path / "file"))
    assert down_onto_file.returncode == 4 and "file: not a directory" in one_line(down_onto_file.stderr)


def test_a_member_that_would_land_outside_the_target_is_refused_with_5(server: Server, tmp_path: Path) -> None:
    """An absolute symlink on the server would point out of the copy: tarfile's data filter refuses it."""
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "escape").symlink_to("/etc/passwd")
    done = cp(server, f":{remote}", str(tmp_path / "local"))
    assert done.returncode == 5 and "escape" in one_line(done.stderr)
    assert not (tmp_path / "local" / "escape").exists()


def test_usage_needs_exactly_one_server_side(server: Server, tmp_path: Path) -> None:
    assert cp(server, str(tmp_path), str(tmp_path)).returncode == 2
    assert cp(server, ":a", ":b").returncode == 2


# -- progress ------------------------------------------------------------------------------------------


def test_progress_on_a_terminal_and_nothing_in_a_pipe(
    server: Server, tmp_path: Path, terminals: list[Terminal]
) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(2 << 20))
    (tmp_path / "remote").mkdir()
    terminal = Terminal(f'{procwire_line("cp", str(source), f":{tmp_path}/remote")}; echo "rc=$?"', cli_env(server))
    terminals.append(terminal)
    assert terminal.finish() == 0
    assert b"rc=0" in terminal.output
    assert b"big.bin -> :" in terminal.output and b"2.0 MiB" in terminal.output and b"/s" in terminal.output
    piped = cp(server, str(source), f":{tmp_path}/remote/piped.bin")
    assert (piped.returncode, piped.stderr) == (0, b"")


# -- within the token's policy ---------------------------------------------------------------------------


def test_copies_stay_within_the_tokens_policy(tmp_path: Path) -> None:
    root = tmp_path / "allowed"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    source = tmp_path / "file.txt"
    source.write_text("policy\n")
    with user_server(tmp_path, root) as (server, env):
        inside = procwire(server, "cp", str(source), f":{root}", env=env)
        assert inside.returncode == 0, inside.stderr
        assert (root / "file.txt").read_text() == "policy\n"
        refused = procwire(server, "cp", str(source), f":{outside}", env=env)
        assert refused.returncode == 126
        assert "refused by the server" in one_line(refused.stderr) and "cwd_roots" in refused.stderr.decode()
        assert not (outside / "file.txt").exists()
