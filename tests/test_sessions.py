"""PTY mode and sessions that outlive their connection, against the real server."""

from __future__ import annotations

import signal
import time

from tests.client import RpcClient, chunk_bytes
from tests.server import Server, pid_exists, wait_until


def read_until(client: RpcClient, proc: int, needle: bytes, timeout: float = 10.0) -> bytes:
    """Collect ``proc``'s output until ``needle`` appears (bounded)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        assert time.monotonic() < deadline, seen
        message = client.next_message()
        if isinstance(message, dict) and message.get("method") == "output" and message["params"]["proc"] == proc:
            seen += chunk_bytes(message["params"])
    return seen


def test_pty_is_a_controlling_terminal_with_the_requested_size(rpc: RpcClient) -> None:
    started = rpc.call("start", argv=["sh", "-c", "tty; stty size; echo TERM=$TERM"], pty={"rows": 33, "cols": 111})
    collected = rpc.collect(started["proc"])
    text = collected.stdout.decode()
    assert "/dev/pts/" in text
    assert "33 111" in text
    assert "TERM=xterm-256color" in text
    assert collected.stderr == b""  # a pty merges stderr into stdout
    assert collected.exit["code"] == 0


def test_pty_process_leads_its_session_and_group(rpc: RpcClient) -> None:
    started = rpc.call("start", argv=["sh", "-c", "ps -o pid=,pgid=,sid= -p $$"], pty={"rows": 24, "cols": 80})
    pid, pgid, sid = map(int, rpc.collect(started["proc"]).stdout.split())
    assert pid == pgid == sid == started["pid"] == started["pgid"]


def test_resize_delivers_sigwinch(rpc: RpcClient) -> None:
    script = "trap 'stty size' WINCH; echo ready; while :; do sleep 0.05; done"
    proc = rpc.call("start", argv=["bash", "-c", script], pty={"rows": 24, "cols": 80})["proc"]
    read_until(rpc, proc, b"ready")
    assert rpc.call("resize", proc=proc, rows=50, cols=132) == {"size": {"rows": 50, "cols": 132}}
    read_until(rpc, proc, b"50 132")
    rpc.call("kill", proc=proc)
    rpc.collect(proc)


def test_ctrl_c_reaches_the_foreground_job(rpc: RpcClient) -> None:
    proc = rpc.call("start", argv=["bash", "--norc", "-i"], pty={"rows": 24, "cols": 80})["proc"]
    rpc.call("write", proc=proc, data="sleep 30\r")
    time.sleep(0.3)
    rpc.call("write", proc=proc, data="\x03")  # Ctrl-C: SIGINT to the foreground job, not to bash
    rpc.call("write", proc=proc, data="echo status-$?\r")
    read_until(rpc, proc, b"status-130")
    rpc.call("write", proc=proc, data="exit 5\r")
    assert rpc.collect(proc).exit["code"] == 5


def test_close_stdin_on_a_pty_sends_end_of_file(rpc: RpcClient) -> None:
    proc = rpc.call("start", argv=["cat"], pty={"rows": 24, "cols": 80})["proc"]
    rpc.call("write", proc=proc, data="typed\r")
    read_until(rpc, proc, b"typed")
    rpc.call("close_stdin", proc=proc)
    assert rpc.collect(proc).exit["code"] == 0


def test_resize_without_a_pty_is_invalid(rpc: RpcClient) -> None:
    proc = rpc.call("start", argv=["sleep", "30"])["proc"]
    assert rpc.error_of("resize", proc=proc, rows=10, cols=10).code == -32602
    rpc.call("kill", proc=proc)
    rpc.collect(proc)


def test_a_kept_process_survives_its_connection_and_replays_on_attach(server: Server) -> None:
    script = "echo one; sleep 0.3; echo two; read line; echo got-$line; exit 4"
    with RpcClient(server.url, server.token) as first:
        started = first.call("start", argv=["sh", "-c", script], on_disconnect="keep")
        read_until(first, started["proc"], b"one")
    assert pid_exists(started["pid"])
    with RpcClient(server.url, server.token) as second:
        listed = {info["proc"]: info for info in second.call("list")["processes"]}
        assert listed[started["proc"]]["on_disconnect"] == "keep"
        assert listed[started["proc"]]["attached"] == 0
        answer = second.call("attach", proc=started["proc"])
        assert answer["truncated"] is False and answer["replay_from"]["stdout"] == 0
        assert read_until(second, started["proc"], b"two").startswith(b"one\n")
        second.call("write", proc=started["proc"], data="hello\n")
        collected = second.collect(started["proc"])
        assert b"got-hello" in collected.stdout
        assert collected.exit["code"] == 4
        # the exit status stays until released
        assert second.call("find", pid=started["pid"])["state"] == "exited"
        assert second.call("release", proc=started["proc"]) == {}


def test_attach_from_an_offset_and_truncation(server: Server) -> None:
    with RpcClient(server.url, server.token) as first:
        script = "printf 0123456789; sleep 30"
        started = first.call("start", argv=["sh", "-c", script], on_disconnect="keep", buffer=4)
        read_until(first, started["proc"], b"9")
    with RpcClient(server.url, server.token) as second:
        answer = second.call("attach", proc=started["proc"], offset=2)
        assert answer["truncated"] is True  # the 4-byte ring kept only 6789
        assert answer["replay_from"] == {"stdout": 6, "stderr": 6 - 6}
        message = second.next_message()
        assert message["params"] == {"proc": started["proc"], "stream": "stdout", "offset": 6, "data": "6789"}
        second.call("detach", proc=started["proc"])
        answer = second.call("attach", proc=started["proc"], offset={"stdout": 8})
        assert answer["truncated"] is False
        assert second.next_message()["params"]["data"] == "89"
        second.call("kill", proc=started["proc"])
        assert second.collect(started["proc"]).exit["signal"] == "SIGKILL"
        second.call("release", proc=started["proc"])


def test_several_connections_attached_at_once_all_receive_and_may_write(server: Server) -> None:
    with RpcClient(server.url, server.token) as owner, RpcClient(server.url, server.token) as watcher:
        proc = owner.call("start", argv=["cat"], on_disconnect="keep")["proc"]
        watcher.call("attach", proc=proc)
        watcher.call("write", proc=proc, data="from-watcher\n")
        assert b"from-watcher" in read_until(owner, proc, b"from-watcher")
        assert b"from-watcher" in read_until(watcher, proc, b"from-watcher")
        owner.call("close_stdin", proc=proc)
        assert owner.collect(proc).exit["code"] == 0
        assert watcher.collect(proc).exit["code"] == 0
        owner.call("release", proc=proc)


def test_detach_stops_the_stream_but_not_the_process(rpc: RpcClient) -> None:
    proc = rpc.call("start", argv=["sh", "-c", "echo a; read x; echo b"], on_disconnect="keep")["proc"]
    read_until(rpc, proc, b"a")
    rpc.call("detach", proc=proc)
    rpc.call("write", proc=proc, data="go\n")
    status = rpc.call("wait", proc=proc, timeout=10)
    assert status["code"] == 0
    assert not [m for m in rpc.pending if isinstance(m, dict) and m.get("method") == "output"]
    info = rpc.call("find", pid=status["pid"])
    assert info["offsets"]["stdout"] == 4  # "a\nb\n" was read even though nobody listened
    rpc.call("release", proc=proc)


def test_a_kept_process_is_not_killed_but_a_normal_one_is(server: Server) -> None:
    with RpcClient(server.url, server.token) as client:
        kept = client.call("start", argv=["sleep", "30"], on_disconnect="keep")
        doomed = client.call("start", argv=["sleep", "30"])
    assert wait_until(lambda: not pid_exists(doomed["pid"]))
    assert pid_exists(kept["pid"])
    with RpcClient(server.url, server.token) as again:
        again.call("kill", proc=kept["proc"])
        again.call("wait", proc=kept["proc"], timeout=10)
        again.call("release", proc=kept["proc"])


def test_stopping_the_service_stops_kept_processes_too() -> None:
    server = Server().start()
    try:
        with RpcClient(server.url, server.token) as client:
            kept = client.call("start", argv=["sleep", "1000"], on_disconnect="keep")
        assert pid_exists(kept["pid"])
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=15)
        assert wait_until(lambda: not pid_exists(kept["pid"]), timeout=5)
    finally:
        server.stop()


def test_a_quick_stop_kills_every_process_group() -> None:
    server = Server().start()
    try:
        with RpcClient(server.url, server.token) as client:
            kept = client.call("start", argv=["sleep", "1000"], on_disconnect="keep")
            normal = client.call("start", argv=["sh", "-c", "trap '' TERM; sleep 1000"])
            server.process.send_signal(signal.SIGINT)
            server.process.wait(timeout=15)
        assert wait_until(lambda: not pid_exists(kept["pid"]) and not pid_exists(normal["pid"]), timeout=5)
    finally:
        server.stop()


def test_two_attaches_in_one_batch_do_not_hang(server: Server) -> None:
    with RpcClient(server.url, server.token) as client:
        proc = client.call("start", argv=["sleep", "30"], on_disconnect="keep")["proc"]
        attach = {"jsonrpc": "2.0", "method": "attach", "params": {"proc": proc}}
        client.send_json([dict(attach, id=1), dict(attach, id=2)])
        answers = {answer["id"]: answer for answer in client.next_message()}
        assert "result" in answers[1]
        assert answers[2]["error"]["code"] == -32602, answers[2]
        assert client.call("kill", proc=proc) == {}
        assert client.collect(proc).exit["signal"] == "SIGKILL"
        client.call("release", proc=proc)


def test_a_kill_right_after_a_pty_start_is_not_lost(rpc: RpcClient) -> None:
    for _ in range(10):
        proc = rpc.call("start", argv=["sleep", "30"], pty={"rows": 24, "cols": 80})["proc"]
        assert rpc.call("kill", proc=proc) == {}
        assert rpc.collect(proc).exit["signal"] == "SIGKILL"


def test_a_finished_process_lets_its_connections_go(server: Server) -> None:
    with RpcClient(server.url, server.token) as client:
        started = client.call("start", argv=["true"], pty={"rows": 24, "cols": 80}, on_disconnect="keep")
        client.collect(started["proc"])
        info = client.call("find", pid=started["pid"])
        assert info["attached"] == 0
        assert client.error_of("resize", proc=started["proc"], rows=5, cols=5).code == -32005
        client.call("release", proc=started["proc"])
