"""One test (at least) per method, against the real server."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import struct
import time

from tests.client import RpcClient
from tests.server import pid_exists


def test_lookpath_resolves_like_go(rpc: RpcClient) -> None:
    assert rpc.call("lookpath", file="sh")["path"] == shutil.which("sh")
    assert rpc.call("lookpath", file="/bin/sh")["path"] == "/bin/sh"


def test_start_answers_before_first_output(rpc: RpcClient) -> None:
    request_id = rpc.request("start", {"argv": ["echo", "first"]})
    answer = rpc.next_message()
    assert answer["id"] == request_id
    result = answer["result"]
    assert set(result) == {"proc", "pid", "pgid"}
    assert result["pgid"] == result["pid"]  # leads its own session and group
    collected = rpc.collect(result["proc"])
    assert collected.stdout == b"first\n"


def test_output_fields_and_offsets(rpc: RpcClient) -> None:
    collected = rpc.run_to_exit(["sh", "-c", "printf abc; sleep 0.05; printf defg"])
    assert collected.stdout == b"abcdefg"
    offsets = [(params["offset"], len(params["data"])) for params in collected.outputs]
    position = 0
    for offset, length in offsets:
        assert offset == position
        position += length
    for params in collected.outputs:
        assert params["stream"] == "stdout"
        assert "encoding" not in params


def test_exit_fields(rpc: RpcClient) -> None:
    collected = rpc.run_to_exit(["sh", "-c", "exit 7"])
    status = collected.exit
    assert status is not None
    assert status["code"] == 7
    assert status["signal"] is None
    assert status["core_dumped"] is False
    assert status["timed_out"] is False
    assert status["output_incomplete"] is False
    assert status["duration"] >= 0
    assert set(status["rusage"]) == {"utime", "stime", "maxrss_kb"}
    assert status["rusage"]["maxrss_kb"] > 0


def test_rusage_is_the_childs_own(rpc: RpcClient) -> None:
    # Burn about 0.3 s of CPU in the child; the report must show it.
    script = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    collected = rpc.run_to_exit(["python3", "-c", script])
    rusage = collected.exit["rusage"]
    assert rusage["utime"] + rusage["stime"] >= 0.25


def test_write_and_close_stdin(rpc: RpcClient) -> None:
    proc = rpc.call("start", argv=["cat"])["proc"]
    assert rpc.call("write", proc=proc, data="héllo\n") == {"written": 7}
    assert rpc.call("write", proc=proc, data=base64.b64encode(b"\x00\xff").decode(), encoding="base64") == {
        "written": 2
    }
    assert rpc.call("close_stdin", proc=proc) == {}
    collected = rpc.collect(proc)
    assert collected.stdout == "héllo\n".encode() + b"\x00\xff"
    assert collected.exit["code"] == 0


def test_write_as_notification_is_carried_out_silently(rpc: RpcClient) -> None:
    proc = rpc.call("start", argv=["cat"])["proc"]
    for index in range(50):
        rpc.notify("write", {"proc": proc, "data": f"line {index}\n"})
    rpc.call("close_stdin", proc=proc)
    collected = rpc.collect(proc)
    assert collected.stdout == "".join(f"line {index}\n" for index in range(50)).encode()
    assert not [message for message in rpc.pending if "id" in message]


def test_signal_by_name_short_name_and_number(rpc: RpcClient) -> None:
    for given, expected in (("SIGTERM", "SIGTERM"), ("INT", "SIGINT"), (int(signal.SIGUSR1), "SIGUSR1")):
        proc = rpc.call("start", argv=["sleep", "30"])["proc"]
        assert rpc.call("signal", proc=proc, signal=given) == {}
        assert rpc.collect(proc).exit["signal"] == expected


def test_signal_leader_only_spares_the_group(rpc: RpcClient) -> None:
    proc = rpc.call("start", argv=["sh", "-c", "sleep 30 & echo $!; wait"])["proc"]
    line = b""
    while not line.endswith(b"\n"):
        message = rpc.next_message()
        if message.get("method") == "output":
            line += message["params"]["data"].encode()
    background = int(line)
    rpc.call("signal", proc=proc, signal="KILL", group=False)
    assert rpc.collect(proc).exit["signal"] == "SIGKILL"
    assert pid_exists(background)
    os.kill(background, signal.SIGKILL)


def test_kill(rpc: RpcClient) -> None:
    proc = rpc.call("start", argv=["sleep", "30"])["proc"]
    assert rpc.call("kill", proc=proc) == {}
    assert rpc.collect(proc).exit["signal"] == "SIGKILL"


def test_stop_returns_the_status_after_sigterm(rpc: RpcClient) -> None:
    proc = rpc.call("start", argv=["sleep", "30"])["proc"]
    status = rpc.call("stop", proc=proc)
    assert status["signal"] == "SIGTERM"
    assert status["proc"] == proc


def test_stop_escalates_to_sigkill_after_grace(rpc: RpcClient) -> None:
    proc = rpc.call("start", argv=["sh", "-c", "trap '' TERM; echo ready; sleep 30"])["proc"]
    assert rpc.next_message()["params"]["data"] == "ready\n"
    started = time.monotonic()
    status = rpc.call("stop", proc=proc, grace=0.3)
    assert status["signal"] == "SIGKILL"
    assert time.monotonic() - started < 10


def test_wait_returns_the_exit_status(rpc: RpcClient) -> None:
    proc = rpc.call("start", argv=["sh", "-c", "exit 3"])["proc"]
    status = rpc.call("wait", proc=proc, timeout=10)
    assert status["code"] == 3
    assert status["proc"] == proc


def test_wait_from_another_connection_of_the_same_token(rpc: RpcClient, server) -> None:
    proc = rpc.call("start", argv=["sleep", "0.2"])["proc"]
    with RpcClient(server.url, server.token) as other:
        assert other.call("wait", proc=proc, timeout=10)["code"] == 0


def test_list_find_release(rpc: RpcClient) -> None:
    started = rpc.call("start", argv=["sleep", "30"], name="napper")
    proc, pid = started["proc"], started["pid"]
    listed = {info["proc"]: info for info in rpc.call("list")["processes"]}
    info = listed[proc]
    assert info["pid"] == pid and info["pgid"] == pid
    assert info["name"] == "napper"
    assert info["argv"] == ["sleep", "30"]
    assert info["state"] == "running"
    assert info["exit"] is None
    assert info["cwd"]
    assert abs(info["started_at"] - time.time()) < 60
    found = rpc.call("find", pid=pid)
    viewer = {"client": rpc.hello["params"]["client_id"], "name": "default", "mode": "control"}
    assert found.pop("viewers") == [viewer]  # find only: the connections receiving its output
    assert found == info
    rpc.call("kill", proc=proc)
    rpc.collect(proc)
    exited = rpc.call("find", pid=pid)
    assert exited["state"] == "exited"
    assert exited["exit"]["signal"] == "SIGKILL"
    assert rpc.call("release", proc=proc) == {}
    assert proc not in {info["proc"] for info in rpc.call("list")["processes"]}


def test_run_collects_everything(rpc: RpcClient) -> None:
    result = rpc.call("run", argv=["sh", "-c", "cat; echo err >&2; exit 4"], input="fed\n")
    assert result["code"] == 4
    assert result["stdout"] == "fed\n"
    assert result["stderr"] == "err\n"
    assert result["encoding"] == "text"
    assert result["truncated"] == {"stdout": False, "stderr": False}
    assert not [message for message in rpc.pending if message.get("method") in ("output", "exit")]


def test_run_merged_stderr_and_base64_input(rpc: RpcClient) -> None:
    result = rpc.call(
        "run",
        argv=["sh", "-c", "cat; echo err >&2"],
        input=base64.b64encode(b"\xff\x00").decode(),
        input_encoding="base64",
        stderr="stdout",
    )
    assert result["encoding"] == "base64"
    assert base64.b64decode(result["stdout"]) == b"\xff\x00err\n"
    assert result["stderr"] == ""


def test_run_truncates_but_never_blocks_the_process(rpc: RpcClient) -> None:
    result = rpc.call("run", argv=["head", "-c", "3000000", "/dev/zero"], max_output=1000, encoding="base64")
    assert result["code"] == 0
    assert base64.b64decode(result["stdout"]) == b"\x00" * 1000
    assert result["truncated"] == {"stdout": True, "stderr": False}


def test_ping(rpc: RpcClient) -> None:
    assert abs(rpc.call("ping")["time"] - time.time()) < 60


def test_binary_output_frames_then_json_exit(rpc: RpcClient) -> None:
    started = rpc.call("start", argv=["sh", "-c", "printf 'o\\377'; printf 'e' >&2"], binary=True)
    collected = rpc.collect(started["proc"])
    assert collected.stdout == b"o\xff"
    assert collected.stderr == b"e"
    assert collected.binary_frames >= 2
    assert collected.outputs == []  # no JSON output notifications in binary mode
    assert collected.exit["code"] == 0


def test_binary_stdin_frames(rpc: RpcClient) -> None:
    proc = rpc.call("start", argv=["cat"], binary=True)["proc"]
    rpc.send_binary(struct.pack("!BI", 0, proc) + b"\x00raw\xfe")
    rpc.call("close_stdin", proc=proc)
    assert rpc.collect(proc).stdout == b"\x00raw\xfe"


def test_binary_stdin_errors_come_back_with_id_null(rpc: RpcClient) -> None:
    rpc.send_binary(struct.pack("!BI", 0, 999_999) + b"x")
    answer = rpc.next_message()
    assert answer["id"] is None and answer["error"]["code"] == -32002
    proc = rpc.call("start", argv=["true"])["proc"]
    rpc.collect(proc)
    rpc.send_binary(struct.pack("!BI", 0, proc) + b"x")
    answer = rpc.next_message()
    assert answer["id"] is None and answer["error"]["code"] == -32005
    rpc.send_binary(struct.pack("!BI", 1, proc) + b"x")
    assert rpc.next_message()["error"]["code"] == -32600
    rpc.send_binary(b"\x00")
    assert rpc.next_message()["error"]["code"] == -32600
    assert "time" in rpc.call("ping")


def test_a_write_larger_than_the_pipe_reports_every_byte(rpc: RpcClient) -> None:
    proc = rpc.call("start", argv=["sh", "-c", "sleep 0.3; wc -c"])["proc"]
    chunk = "x" * 60000
    for _ in range(40):  # 2.4 MB: more than the pipe holds while the child sleeps
        assert rpc.call("write", proc=proc, data=chunk) == {"written": 60000}
    rpc.call("close_stdin", proc=proc)
    assert rpc.collect(proc).stdout.strip() == b"2400000"
