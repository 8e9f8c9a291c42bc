"""Resource limits contain what a user runs (issue 5): a fork bomb, a huge allocation.

The policy runs the user's processes as ``nobody`` (RLIMIT_NPROC does not bind
root) with RLIMIT_NPROC and RLIMIT_AS; both are set by prlimit(1) before exec.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client import RpcClient
from tests.server import Server, pid_exists, wait_until

TOKEN = "jailed-token-0123456789"
NPROC = 20
ADDRESS_SPACE = 256 * 1024 * 1024


@pytest.fixture(scope="module")
def jail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("containment")
    config = base / "procwire.toml"
    config.write_text(
        'AUDIT_LOG = ""\n'
        "[[tokens]]\n"
        'name = "jailed"\nrole = "user"\n'
        f'sha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"\n'
        "[tokens.policy]\n"
        'allow = ["/usr/bin/*"]\n'
        'cwd_roots = ["/tmp"]\n'
        'user = "nobody"\n'
        f"rlimits = {{ nproc = {NPROC}, as = {ADDRESS_SPACE} }}\n"
    )
    server = Server(env={"PROCWIRE_CONFIG": str(config), "PROCWIRE_KILL_GRACE": "0.5"}).start()
    try:
        yield server
    finally:
        server.stop()


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def test_a_fork_bomb_stays_within_rlimit_nproc_and_is_fully_killed(jail: Server) -> None:
    # A bounded fork bomb: 200 background children wanted, RLIMIT_NPROC allows 20
    # processes of the user; the shell gives up (exit 2) when fork fails.
    bomb = "for i in $(seq 200); do sleep 60 & done; wait"
    with RpcClient(jail.url, TOKEN) as client:
        started = client.call("start", argv=["/usr/bin/sh", "-c", bomb], cwd="/tmp")
        status = client.collect(started["proc"]).exit
        assert status["code"] == 2, status
        left = group_members(started["pgid"])
        assert 1 <= len(left) < NPROC, len(left)
        assert all(os.stat(f"/proc/{pid}").st_uid == 65534 for pid in left)
    # the connection is gone: the whole group, orphans included, is killed
    assert wait_until(lambda: group_members(started["pgid"]) == [])
    assert wait_until(lambda: not any(pid_exists(pid) for pid in left))  # and reaped: no zombie


def test_rlimit_as_makes_a_large_allocation_fail(jail: Server) -> None:
    allocate = f"bytearray({2 * ADDRESS_SPACE}); print('allocated')"
    with RpcClient(jail.url, TOKEN) as client:
        collected = client.run_to_exit(["/usr/bin/python3", "-c", allocate], cwd="/tmp")
    assert collected.exit["code"] == 1
    assert b"MemoryError" in collected.stderr
    assert b"allocated" not in collected.stdout
