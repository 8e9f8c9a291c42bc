"""Several controllers on one terminal (issue 15, item 2), against the real server.

Each step checks the size the terminal really has (``stty size`` run in it)
and the size ``find`` shows, after a resize, a detach or a disconnect: the
``smallest`` rule (tmux's) and ``latest`` (the last resize wins), with two
and three controlling connections (across two hosts of a cluster:
tests/test_cluster.py).
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

import procwire_client as pw
from tests.client import RpcClient, chunk_bytes
from tests.server import Server, wait_until

BOUND = 10.0  # seconds for any answer from the shell
NAME = "size rule"  # the shells these tests start, killed by the fixture
ASKED = itertools.count(1)


def stty_size(client: RpcClient, proc: int) -> tuple[int, int]:
    """The terminal's size as the process sees it: ``stty size`` in the shell, read back by ``client``
    (attached).  Each question has its own tag, so an answer read by another connection earlier, or
    the command's echo (it says ``$(stty size)``, not numbers), cannot match."""
    tag = next(ASKED)
    client.call("write", proc=proc, data=f'echo "size{tag}=$(stty size)="\n')
    answer = re.compile(rb"size%d=(\d+) (\d+)=" % tag)
    seen = b""
    deadline = time.monotonic() + BOUND
    while (found := answer.search(seen)) is None:
        assert time.monotonic() < deadline, seen
        message = client.next_message()
        if isinstance(message, dict) and message.get("method") == "output" and message["params"]["proc"] == proc:
            seen += chunk_bytes(message["params"])
    return int(found[1]), int(found[2])


def shown(client: RpcClient, pid: int) -> dict[str, int]:
    return client.call("find", pid=pid)["size"]


def expect(reader: RpcClient, started: dict[str, int], rows: int, cols: int) -> None:
    """The terminal has this size, for the process and for ``find``."""
    assert stty_size(reader, started["proc"]) == (rows, cols)
    assert shown(reader, started["pid"]) == {"rows": rows, "cols": cols}


def resized(client: RpcClient, proc: int, rows: int, cols: int) -> dict[str, int]:
    """Resize, and say the size the terminal took."""
    answer: dict[str, dict[str, int]] = client.call("resize", proc=proc, rows=rows, cols=cols)
    return answer["size"]


def shell(client: RpcClient, rows: int, cols: int, **params: object) -> dict[str, int]:
    """A kept shell on a terminal of this size (kept: it outlives its starter's connection)."""
    pty = {"rows": rows, "cols": cols}
    started: dict[str, int] = client.call("start", argv=["sh"], pty=pty, on_disconnect="keep", name=NAME, **params)
    return started


@pytest.fixture
def controllers(server: Server) -> Iterator[list[RpcClient]]:
    """Three connections of one token; whatever the test started is killed at the end."""
    with ExitStack() as stack:
        clients = [stack.enter_context(RpcClient(server.url, server.token)) for _ in range(3)]
        yield clients
        with RpcClient(server.url, server.token) as cleaner:
            for info in cleaner.call("list")["processes"]:
                if info["name"] != NAME:
                    continue
                if info["state"] == "running":
                    cleaner.call("kill", proc=info["proc"])
                    assert cleaner.call("wait", proc=info["proc"], timeout=BOUND)["signal"] == "SIGKILL"
                cleaner.call("release", proc=info["proc"])


def test_smallest_with_three_controllers_follows_attaches_detaches_and_disconnects(
    controllers: list[RpcClient],
) -> None:
    a, b, c = controllers
    started = shell(a, 40, 120, size_rule="smallest")
    proc = started["proc"]
    info = a.call("find", pid=started["pid"])
    assert info["size_rule"] == "smallest" and info["size"] == {"rows": 40, "cols": 120}
    expect(a, started, 40, 120)

    b.call("attach", proc=proc)
    assert resized(b, proc, 30, 150) == {"rows": 30, "cols": 120}  # rows from b, columns from a
    expect(a, started, 30, 120)
    c.call("attach", proc=proc)
    assert resized(c, proc, 50, 100) == {"rows": 30, "cols": 100}
    expect(a, started, 30, 100)

    b.call("detach", proc=proc)  # b's 30 rows stop counting: a's 40
    expect(a, started, 40, 100)
    c.close()  # c's 100 columns too: a alone
    assert wait_until(lambda: shown(a, started["pid"]) == {"rows": 40, "cols": 120}, timeout=BOUND)
    expect(a, started, 40, 120)
    assert resized(a, proc, 20, 60) == {"rows": 20, "cols": 60}  # alone, a may grow or shrink it
    assert resized(a, proc, 45, 130) == {"rows": 45, "cols": 130}
    expect(a, started, 45, 130)


def test_latest_with_three_controllers_falls_back_to_the_previous_size_when_its_sender_leaves(
    controllers: list[RpcClient],
) -> None:
    a, b, c = controllers
    started = shell(a, 24, 80)
    proc = started["proc"]
    assert a.call("find", pid=started["pid"])["size_rule"] == "latest"  # the default, today's behaviour

    b.call("attach", proc=proc)
    assert resized(b, proc, 30, 100) == {"rows": 30, "cols": 100}
    c.call("attach", proc=proc)
    assert resized(c, proc, 40, 120) == {"rows": 40, "cols": 120}
    expect(a, started, 40, 120)
    assert resized(b, proc, 35, 90) == {"rows": 35, "cols": 90}  # smaller, but the latest
    expect(a, started, 35, 90)

    b.call("detach", proc=proc)  # the latest size leaves: c's was sent before it
    expect(a, started, 40, 120)
    c.close()
    assert wait_until(lambda: shown(a, started["pid"]) == {"rows": 24, "cols": 80}, timeout=BOUND)
    expect(a, started, 24, 80)


@pytest.mark.parametrize(("rule", "together"), [("smallest", (30, 80)), ("latest", (40, 80))])
def test_two_controllers_and_the_second_one_leaving(
    controllers: list[RpcClient], rule: str, together: tuple[int, int]
) -> None:
    a, b, _ = controllers
    started = shell(a, 30, 100, size_rule=rule)
    b.call("attach", proc=started["proc"])
    resized(b, started["proc"], 40, 80)
    expect(b, started, *together)
    b.close()
    assert wait_until(lambda: shown(a, started["pid"]) == {"rows": 30, "cols": 100}, timeout=BOUND)
    expect(a, started, 30, 100)


def test_a_kept_terminal_whose_controllers_all_left_keeps_its_size(controllers: list[RpcClient]) -> None:
    a, b, _ = controllers
    started = shell(a, 30, 100, size_rule="smallest")
    a.close()  # the starter leaves: its size stops counting, nobody else sized it
    b.call("attach", proc=started["proc"])
    assert wait_until(lambda: b.call("find", pid=started["pid"])["attached"] == 1, timeout=BOUND)  # a is gone
    expect(b, started, 30, 100)
    assert resized(b, started["proc"], 50, 150) == {"rows": 50, "cols": 150}  # the starter no longer holds it small
    expect(b, started, 50, 150)


def test_a_process_without_a_terminal_shows_no_size_rule(rpc: RpcClient) -> None:
    started = rpc.call("start", argv=["sleep", "5"])
    info = rpc.call("find", pid=started["pid"])
    assert info["size"] is None and info["size_rule"] is None
    rpc.call("kill", proc=started["proc"])
    rpc.collect(started["proc"])


def test_the_python_client_starts_a_terminal_with_a_size_rule(server: Server) -> None:
    with pw.Client(server.url, server.token) as client:
        process = client.start(["sleep", "30"], pty=(20, 70), size_rule="smallest")
        try:
            assert process.pid is not None
            shown_info = client.find(process.pid).extra
            assert shown_info["size_rule"] == "smallest" and shown_info["size"] == {"rows": 20, "cols": 70}
        finally:
            process.kill()
            assert process.wait(BOUND).signal == "SIGKILL"
