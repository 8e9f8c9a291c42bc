"""Output per subscriber and screen snapshots on attach, against the real server.

The format of output (JSON text, base64, binary frames) belongs to each
connection: whoever started a process and however, any connection of the
token can follow it in the format it reads.
"""

from __future__ import annotations

import time

import pyte

from tests.client import BINARY_HEADER, RpcClient, chunk_bytes
from tests.server import Server
from tests.test_sessions import read_until

TICKER = ["sh", "-c", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.05; done"]


def next_output(client: RpcClient, proc: int, timeout: float = 10.0) -> dict | bytes:
    """The next output of ``proc``, as a notification's params or a binary frame."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = client.next_message()
        if isinstance(message, bytes):
            if BINARY_HEADER.unpack_from(message)[1] == proc:
                return message
        elif message.get("method") == "output" and message["params"]["proc"] == proc:
            return message["params"]
    raise AssertionError("no output in time")


def test_a_binary_process_is_followed_as_json_by_one_and_as_frames_by_another(server: Server) -> None:
    with RpcClient(server.url, server.token) as cli, RpcClient(server.url, server.token) as console:
        proc = cli.call("start", argv=TICKER, binary=True, on_disconnect="keep")["proc"]
        assert isinstance(next_output(cli, proc), bytes)
        answer = console.call("attach", proc=proc, binary=False, encoding="text")
        assert answer["screen"] is False
        seen = next_output(console, proc)
        assert isinstance(seen, dict) and seen["stream"] == "stdout" and seen["data"].startswith("tick ")
        live = next_output(console, proc)
        assert isinstance(live, dict) and live["offset"] >= seen["offset"] + len(seen["data"])
        assert isinstance(next_output(cli, proc), bytes)  # the starter keeps its own format
        with RpcClient(server.url, server.token) as third:
            third.call("attach", proc=proc, encoding="base64", binary=False)
            params = next_output(third, proc)
            assert isinstance(params, dict) and chunk_bytes(params).startswith(b"tick ")
            assert params["encoding"] == "base64"
        cli.call("kill", proc=proc)
        cli.collect(proc)
        cli.call("release", proc=proc)


def test_an_attach_that_does_not_say_gets_the_starters_format(server: Server) -> None:
    with RpcClient(server.url, server.token) as starter, RpcClient(server.url, server.token) as other:
        proc = starter.call("start", argv=TICKER, binary=True, on_disconnect="keep")["proc"]
        other.call("attach", proc=proc)
        assert isinstance(next_output(other, proc), bytes)
        starter.call("kill", proc=proc)
        starter.collect(proc)
        starter.call("release", proc=proc)


def test_process_info_shows_the_command_and_the_terminal_size(rpc: RpcClient) -> None:
    typed = rpc.call(
        "start", argv=["sh", "-c", 'exec "${SHELL:-/bin/sh}"'], command="shell", pty={"rows": 20, "cols": 70}
    )
    plain = rpc.call("start", argv=["sleep", "30"])
    quoted = rpc.call("start", argv=["echo", "a b", "it's"])
    listed = {item["proc"]: item for item in rpc.call("list")["processes"]}
    assert listed[typed["proc"]]["command"] == "shell"
    assert listed[typed["proc"]]["size"] == {"rows": 20, "cols": 70}
    assert listed[plain["proc"]]["command"] == "sleep 30" and listed[plain["proc"]]["size"] is None
    assert listed[quoted["proc"]]["command"] == "echo 'a b' 'it'\"'\"'s'"
    rpc.call("resize", proc=typed["proc"], rows=30, cols=100)
    assert rpc.call("find", pid=typed["pid"])["size"] == {"rows": 30, "cols": 100}
    assert "at most 4096" in rpc.error_of("start", argv=["true"], command="x" * 4097).message
    rpc.collect(quoted["proc"])
    for started in (typed, plain):
        rpc.call("kill", proc=started["proc"])
        rpc.collect(started["proc"])


def test_reattaching_a_terminal_shows_its_current_screen_not_its_history(server: Server) -> None:
    script = (
        "printf '\\033[?1h'; i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo old frame $i; done;"
        " printf '\\033[H\\033[2J\\033[1;31mRED\\033[0m now\\r\\n'; read line; echo got $line"
    )
    with RpcClient(server.url, server.token) as first:
        proc = first.call("start", argv=["sh", "-c", script], pty={"rows": 12, "cols": 50}, on_disconnect="keep")[
            "proc"
        ]
        history = read_until(first, proc, b"RED\x1b[0m now")
    with RpcClient(server.url, server.token) as again:
        answer = again.call("attach", proc=proc, snapshot=True, binary=True)
        assert answer["screen"] is True and answer["truncated"] is False
        assert answer["replay_from"]["stdout"] == answer["offsets"]["stdout"] == len(history)
        screen = again.next_message()
        assert screen["method"] == "screen"
        params = screen["params"]
        assert (params["proc"], params["offset"], params["rows"], params["cols"]) == (proc, len(history), 12, 50)
        assert "RED" in params["data"] and "old frame" not in params["data"]
        assert "\x1b[?1h" in params["data"]  # application cursor keys, set before all those frames
        assert len(params["data"]) < 500 < len(history)
        terminal = pyte.Screen(50, 12)
        pyte.ByteStream(terminal).feed(params["data"].encode())
        assert terminal.display[0].rstrip() == "RED now" and terminal.buffer[0][0].fg == "red"
        again.call("write", proc=proc, data="typed\r")
        live = b""
        while b"got typed" not in live:
            frame = next_output(again, proc)
            assert isinstance(frame, bytes)  # the live output in this connection's format
            live += frame[BINARY_HEADER.size :]
        assert again.collect(proc).exit["code"] == 0
        again.call("release", proc=proc)


def test_snapshot_is_ignored_without_a_terminal(rpc: RpcClient) -> None:
    proc = rpc.call("start", argv=["sh", "-c", "echo hi; sleep 30"], on_disconnect="keep")["proc"]
    read_until(rpc, proc, b"hi")
    answer = rpc.call("attach", proc=proc, snapshot=True)
    assert answer["screen"] is False and answer["replay_from"] == {"stdout": 0, "stderr": 0}
    assert next_output(rpc, proc)["data"] == "hi\n"
    rpc.call("kill", proc=proc)
    rpc.collect(proc)
    rpc.call("release", proc=proc)
