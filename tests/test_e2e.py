"""What a user would try first, end to end against the real server."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import signal
import threading
import time
from pathlib import Path

from tests.client import RpcClient
from tests.server import Server, pid_exists, wait_until

DEADLINE = 10.0


def read_lines(client: RpcClient, proc: int, count: int = 1) -> list[bytes]:
    """Read ``proc``'s stdout notifications until ``count`` whole lines arrived."""
    text = b""
    while text.count(b"\n") < count:
        message = client.next_message()
        if message.get("method") == "output" and message["params"]["proc"] == proc:
            text += message["params"]["data"].encode()
    return text.splitlines(keepends=True)


def read_line(client: RpcClient, proc: int) -> bytes:
    return read_lines(client, proc)[0]


def test_echo_hi(rpc: RpcClient) -> None:
    collected = rpc.run_to_exit(["echo", "hi"])
    assert collected.stdout == b"hi\n"
    assert collected.exit["code"] == 0


def test_fifty_megabytes_base64_arrive_intact(rpc: RpcClient, tmp_path: Path) -> None:
    payload = random.Random(7).randbytes(50 * 1024 * 1024)
    source = tmp_path / "payload.bin"
    source.write_bytes(payload)
    collected = rpc.run_to_exit(["cat", str(source)], encoding="base64")
    assert all(params["encoding"] == "base64" for params in collected.outputs)
    assert len(collected.stdout) == len(payload)
    assert hashlib.sha256(collected.stdout).hexdigest() == hashlib.sha256(payload).hexdigest()
    assert collected.exit["code"] == 0


def test_invalid_utf8_in_text_mode_is_sent_base64(rpc: RpcClient) -> None:
    collected = rpc.run_to_exit(["printf", "ok\\377\\376end"])
    assert collected.stdout == b"ok\xff\xfeend"
    assert any(params.get("encoding") == "base64" for params in collected.outputs)


def test_a_character_split_by_the_pipe_is_never_split_in_messages(rpc: RpcClient) -> None:
    collected = rpc.run_to_exit(["sh", "-c", "printf 'a\\303'; sleep 0.2; printf '\\251b'"])
    assert collected.stdout == "aéb".encode()
    assert all("encoding" not in params for params in collected.outputs)
    assert "".join(params["data"] for params in collected.outputs) == "aéb"


def test_interleaved_stdout_and_stderr_stay_apart(rpc: RpcClient) -> None:
    script = "for i in 1 2 3 4 5 6 7 8 9 10; do echo out$i; echo err$i >&2; done"
    collected = rpc.run_to_exit(["sh", "-c", script])
    assert collected.stdout == b"".join(b"out%d\n" % index for index in range(1, 11))
    assert collected.stderr == b"".join(b"err%d\n" % index for index in range(1, 11))
    assert {params["stream"] for params in collected.outputs} == {"stdout", "stderr"}


def test_exit_code_seven(rpc: RpcClient) -> None:
    status = rpc.run_to_exit(["sh", "-c", "exit 7"]).exit
    assert (status["code"], status["signal"]) == (7, None)


def test_killed_by_its_own_sigkill(rpc: RpcClient) -> None:
    status = rpc.run_to_exit(["sh", "-c", "kill -9 $$"]).exit
    assert (status["code"], status["signal"], status["core_dumped"]) == (None, "SIGKILL", False)


def test_timeout_terminates_the_group(rpc: RpcClient) -> None:
    started = time.monotonic()
    status = rpc.run_to_exit(["sleep", "30"], timeout=0.3).exit
    assert status["timed_out"] is True
    assert status["signal"] == "SIGTERM"
    assert time.monotonic() - started < DEADLINE


def test_timeout_escalates_to_sigkill_when_term_is_ignored(rpc: RpcClient) -> None:
    status = rpc.run_to_exit(["sh", "-c", "trap '' TERM; sleep 30"], timeout=0.3).exit
    assert status["timed_out"] is True
    assert status["signal"] == "SIGKILL"


def test_cwd_and_env(rpc: RpcClient, tmp_path: Path) -> None:
    collected = rpc.run_to_exit(
        ["sh", "-c", 'pwd; echo "$GREETING"; echo "${HOME-unset}"'],
        cwd=str(tmp_path),
        env={"GREETING": "bonjour", "HOME": None},
    )
    assert collected.stdout.decode().splitlines() == [str(tmp_path), "bonjour", "unset"]


def test_clear_env_keeps_only_what_is_given(rpc: RpcClient) -> None:
    collected = rpc.run_to_exit(["/usr/bin/env"], clear_env=True, env={"ONLY": "this"})
    assert collected.stdout == b"ONLY=this\n"


def test_relative_executable_is_resolved_against_cwd(rpc: RpcClient, tmp_path: Path) -> None:
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh\necho from-script\n")
    script.chmod(0o755)
    collected = rpc.run_to_exit(["./hello.sh"], cwd=str(tmp_path))
    assert collected.stdout == b"from-script\n"


def test_lookpath_present_and_absent(rpc: RpcClient) -> None:
    assert rpc.call("lookpath", file="true")["path"].endswith("/true")
    assert rpc.error_of("lookpath", file="no-such-program-here").code == -32001


def test_disconnect_kills_the_whole_tree(server: Server) -> None:
    with RpcClient(server.url, server.token) as client:
        started = client.call("start", argv=["sh", "-c", "sleep 1000 & echo $!; sleep 1000 & echo $!; wait"])
        pids = [started["pid"], *(int(line) for line in read_lines(client, started["proc"], 2))]
        assert all(pid_exists(pid) for pid in pids)
    assert wait_until(lambda: not any(pid_exists(pid) for pid in pids)), [p for p in pids if pid_exists(p)]


def test_disconnect_kills_a_child_that_ignores_sigterm(server: Server) -> None:
    with RpcClient(server.url, server.token) as client:
        started = client.call("start", argv=["sh", "-c", "trap '' TERM; echo ready; sleep 1000"])
        assert read_line(client, started["proc"]) == b"ready\n"
        pid = started["pid"]
    assert wait_until(lambda: not pid_exists(pid))


def test_a_grandchild_holding_the_pipe_does_not_hang_exit(rpc: RpcClient) -> None:
    started = rpc.call("start", argv=["sh", "-c", "sleep 30 & echo $!; exit 0"])
    background = int(read_line(rpc, started["proc"]))
    begun = time.monotonic()
    status = rpc.collect(started["proc"]).exit
    assert status["code"] == 0
    assert status["output_incomplete"] is True
    assert time.monotonic() - begun < DEADLINE
    os.kill(background, signal.SIGKILL)
    assert wait_until(lambda: not pid_exists(background))  # reaped by the worker, no zombie


def test_orphans_are_reaped(rpc: RpcClient) -> None:
    started = rpc.call("start", argv=["sh", "-c", "sleep 0.3 & echo $!"])
    orphan = int(read_line(rpc, started["proc"]))
    rpc.collect(started["proc"])
    assert wait_until(lambda: not pid_exists(orphan))


def test_a_slow_reader_slows_the_child_and_loses_nothing(server: Server) -> None:
    total = 256 * 1024 * 1024
    worker = server.worker_pids()[0]
    with RpcClient(server.url, server.token, timeout=60) as client:
        proc = client.call("start", argv=["head", "-c", str(total), "/dev/zero"], encoding="base64")["proc"]
        before = rss_kib(worker)
        time.sleep(2)  # not reading: the socket and the pipe fill up, then the child blocks
        grown = rss_kib(worker) - before
        received = 0
        while True:
            message = client.next_message()
            if message.get("method") == "output":
                received += len(base64.b64decode(message["params"]["data"]))
            elif message.get("method") == "exit" and message["params"]["proc"] == proc:
                break
    assert received == total
    assert grown < 64 * 1024, f"worker grew {grown} KiB while the client was not reading"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_two_hundred_connections_at_once(server: Server) -> None:
    count = 200
    results: dict[int, int | None] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(count, timeout=DEADLINE * 3)

    def one(index: int) -> None:
        try:
            with RpcClient(server.url, server.token, timeout=60) as client:
                barrier.wait()
                results[index] = client.run_to_exit(["sh", "-c", f"sleep 0.1; exit {index % 256}"]).exit["code"]
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=one, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[:3]
    assert results == {index: index % 256 for index in range(count)}


def test_a_stdin_flood_is_refused_not_buffered_and_the_connection_stays_responsive(rpc: RpcClient) -> None:
    proc = rpc.call("start", argv=["sleep", "100"])["proc"]
    chunk = "x" * 60000
    for _ in range(120):  # 7.2 MB at a child that never reads: more than STDIN_BUFFER_BYTES
        rpc.notify("write", {"proc": proc, "data": chunk})
    request_id = rpc.request("kill", {"proc": proc})
    refused = 0
    while True:
        message = rpc.next_message()
        if message.get("id") == request_id:
            assert message["result"] == {}
            break
        if message.get("id", "absent") is None:
            assert message["error"]["code"] == -32004
            assert "stdin buffer full" in message["error"]["message"]
            refused += 1
    assert refused > 0
    assert rpc.collect(proc).exit["signal"] == "SIGKILL"


def test_a_start_in_a_slow_batch_still_answers_before_its_output(rpc: RpcClient) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": "a", "method": "start", "params": {"argv": ["echo", "hi"]}},
        {"jsonrpc": "2.0", "id": "b", "method": "run", "params": {"argv": ["sleep", "2.5"]}},
    ]
    rpc.send_json(batch)
    answers = rpc.next_message()
    assert isinstance(answers, list), answers
    proc = next(answer["result"]["proc"] for answer in answers if answer["id"] == "a")
    collected = rpc.collect(proc)
    assert collected.stdout == b"hi\n"
    assert collected.exit["output_incomplete"] is False


def test_children_do_not_inherit_procwire_settings(rpc: RpcClient) -> None:
    collected = rpc.run_to_exit(["/usr/bin/env"])
    assert b"PATH=" in collected.stdout
    assert b"PROCWIRE_" not in collected.stdout


def test_refused_writes_name_their_process(rpc: RpcClient) -> None:
    assert rpc.hello["params"]["limits"]["stdin_buffer_bytes"] > 0
    proc = rpc.call("start", argv=["true"])["proc"]
    rpc.collect(proc)
    rpc.notify("write", {"proc": proc, "data": "late"})
    answer = rpc.next_message()
    assert answer["id"] is None
    assert answer["error"]["code"] == -32005
    assert answer["error"]["data"]["proc"] == proc
