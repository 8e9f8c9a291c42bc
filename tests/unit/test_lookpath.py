"""app.launcher.lookpath: resolving an executable like Go's exec.LookPath, on a scratch tree."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.processes.launcher import lookpath


def make_file(path: Path, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(mode)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """bin/tool (executable), bin/plain (0644), lib/ (a directory), other/tool (executable)."""
    make_file(tmp_path / "bin" / "tool")
    make_file(tmp_path / "bin" / "plain", 0o644)
    make_file(tmp_path / "other" / "tool")
    make_file(tmp_path / "other" / "plain")
    (tmp_path / "lib" / "tooldir").mkdir(parents=True)
    return tmp_path


# -- names with a slash -----------------------------------------------------------


def test_absolute_path_is_returned_unchanged(tree: Path) -> None:
    path = str(tree / "bin" / "tool")
    assert lookpath(path, "") == path
    assert lookpath(path, None, cwd="/") == path


def test_absolute_path_with_dot_segments_is_not_normalised(tree: Path) -> None:
    path = f"{tree}/lib/../bin/./tool"
    assert lookpath(path, None) == path


def test_relative_name_with_slash_is_checked_against_cwd(tree: Path) -> None:
    assert lookpath("bin/tool", "/nonexistent", cwd=str(tree)) == "bin/tool"
    assert lookpath("./bin/tool", None, cwd=str(tree)) == "./bin/tool"
    assert lookpath("../bin/tool", None, cwd=str(tree / "lib")) == "../bin/tool"


def test_relative_name_with_slash_uses_the_process_cwd_without_cwd(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    assert lookpath("./bin/tool", "") == "./bin/tool"
    monkeypatch.chdir(tree / "lib")
    with pytest.raises(FileNotFoundError):
        lookpath("./bin/tool", "")


def test_slash_name_is_not_searched_in_path(tree: Path) -> None:
    with pytest.raises(FileNotFoundError):
        lookpath("bin/tool", str(tree), cwd=str(tree / "lib"))


def test_missing_slash_name(tree: Path) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        lookpath("./nope", None, cwd=str(tree))
    assert caught.value.errno == errno.ENOENT
    assert caught.value.filename == "./nope"


def test_missing_absolute_path(tree: Path) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        lookpath(str(tree / "bin" / "absent"), None)
    assert caught.value.errno == errno.ENOENT
    assert caught.value.filename == str(tree / "bin" / "absent")


def test_broken_symlink_is_not_found(tree: Path) -> None:
    (tree / "bin" / "dangling").symlink_to(tree / "bin" / "gone")
    with pytest.raises(FileNotFoundError):
        lookpath(str(tree / "bin" / "dangling"), None)


def test_symlink_to_an_executable_is_fine(tree: Path) -> None:
    (tree / "bin" / "link").symlink_to(tree / "bin" / "tool")
    assert lookpath(str(tree / "bin" / "link"), None) == str(tree / "bin" / "link")


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o000, 0o444])
def test_slash_name_not_executable(tree: Path, mode: int) -> None:
    path = make_file(tree / "noexec", mode)
    with pytest.raises(PermissionError) as caught:
        lookpath(str(path), None)
    assert caught.value.errno == errno.EACCES
    assert caught.value.filename == str(path)


def test_relative_slash_name_not_executable_names_it_as_given(tree: Path) -> None:
    with pytest.raises(PermissionError) as caught:
        lookpath("bin/plain", None, cwd=str(tree))
    assert caught.value.errno == errno.EACCES
    assert caught.value.filename == "bin/plain"


@pytest.mark.parametrize("mode", [0o100, 0o010, 0o001, 0o700, 0o111])
def test_any_execute_bit_is_enough_for_the_owner_or_root(tree: Path, mode: int) -> None:
    if os.geteuid() != 0 and not mode & stat.S_IXUSR:
        pytest.skip("only root may run a file with no owner execute bit that it owns")
    path = make_file(tree / f"x{mode:o}", mode)
    assert lookpath(str(path), None) == str(path)


@pytest.mark.parametrize("name", ["lib/tooldir", "lib/tooldir/", "./lib", "./", "/"])
def test_slash_name_that_is_a_directory(tree: Path, name: str) -> None:
    with pytest.raises(PermissionError) as caught:
        lookpath(name, None, cwd=str(tree))
    assert caught.value.errno == errno.EACCES
    assert caught.value.filename == name


def test_executable_directory_is_still_refused(tree: Path) -> None:
    directory = tree / "lib" / "tooldir"
    directory.chmod(0o755)
    assert os.access(directory, os.X_OK)
    with pytest.raises(PermissionError):
        lookpath(str(directory), None)


def test_path_through_a_regular_file(tree: Path) -> None:
    with pytest.raises(NotADirectoryError):
        lookpath(str(tree / "bin" / "tool" / "x"), None)


# -- bare names searched in PATH ----------------------------------------------------


def test_bare_name_found_in_path(tree: Path) -> None:
    assert lookpath("tool", str(tree / "bin")) == str(tree / "bin" / "tool")


def test_first_match_in_path_order_wins(tree: Path) -> None:
    bin_, other = str(tree / "bin"), str(tree / "other")
    assert lookpath("tool", f"{bin_}:{other}") == f"{bin_}/tool"
    assert lookpath("tool", f"{other}:{bin_}") == f"{other}/tool"


def test_non_executable_match_is_skipped_for_a_later_one(tree: Path) -> None:
    path = f"{tree / 'bin'}:{tree / 'other'}"
    assert lookpath("plain", path) == str(tree / "other" / "plain")


def test_directory_match_is_skipped(tree: Path) -> None:
    make_file(tree / "other" / "tooldir")
    path = f"{tree / 'lib'}:{tree / 'other'}"
    assert lookpath("tooldir", path) == str(tree / "other" / "tooldir")


def test_missing_directories_in_path_are_skipped(tree: Path) -> None:
    path = f"{tree / 'nowhere'}:/nonexistent/dir:{tree / 'bin' / 'tool'}:{tree / 'other'}"
    assert lookpath("tool", path) == str(tree / "other" / "tool")


def test_trailing_slash_on_a_path_entry(tree: Path) -> None:
    assert lookpath("tool", f"{tree / 'bin'}/") == f"{tree / 'bin'}/tool"


def test_relative_path_entry_is_resolved_against_cwd(tree: Path) -> None:
    assert lookpath("tool", "other", cwd=str(tree)) == "other/tool"
    with pytest.raises(FileNotFoundError):
        lookpath("tool", "other", cwd=str(tree / "lib"))


@pytest.mark.parametrize("name", ["absent", "plain", "tooldir", ".", ".."])
def test_bare_name_without_an_executable_match_is_not_found(tree: Path, name: str) -> None:
    # like exec.LookPath: a non-executable or directory match in PATH is "not found"
    path = f"{tree / 'bin'}:{tree / 'lib'}"
    with pytest.raises(FileNotFoundError) as caught:
        lookpath(name, path)
    assert caught.value.errno == errno.ENOENT
    assert caught.value.filename == name
    assert "not found in PATH" in caught.value.strerror


def test_bare_name_is_not_looked_up_in_cwd_when_path_lacks_it(tree: Path) -> None:
    with pytest.raises(FileNotFoundError):
        lookpath("tool", str(tree / "other" / "missing"), cwd=str(tree / "bin"))


def test_none_search_path_uses_the_default(tmp_path: Path) -> None:
    found = lookpath("sh", None)
    assert os.path.dirname(found) in os.defpath.split(os.pathsep)
    assert os.path.basename(found) == "sh"
    assert os.access(found, os.X_OK)


def test_bare_name_is_not_found_through_the_default_when_path_is_given(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        lookpath("sh", str(tmp_path))


# -- property: the first executable regular file along PATH ------------------------

KINDS = st.sampled_from(["missing", "exec", "plain", "dir", "no-dir"])


@settings(max_examples=60, deadline=None)
@given(st.lists(KINDS, min_size=1, max_size=6))
def test_first_executable_along_path(kinds: list[str]) -> None:
    with tempfile.TemporaryDirectory() as root:
        entries = []
        for index, kind in enumerate(kinds):
            directory = Path(root) / f"d{index}"
            entries.append(str(directory))
            if kind == "no-dir":
                continue
            directory.mkdir()
            if kind == "exec":
                make_file(directory / "prog", 0o755)
            elif kind == "plain":
                make_file(directory / "prog", 0o644)
            elif kind == "dir":
                (directory / "prog").mkdir()
        search = os.pathsep.join(entries)
        if "exec" in kinds:
            assert lookpath("prog", search) == f"{entries[kinds.index('exec')]}/prog"
        else:
            with pytest.raises(FileNotFoundError):
                lookpath("prog", search)
