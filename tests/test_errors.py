"""Every row of the error table and every bad-input case, against the real server.

Each case checks the JSON-RPC error code, that the message helps (it names
the field, the file or the process), ``data.errno`` where it applies, and that
the very same connection still answers the next request.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket

from app.errors import ErrorCode
from tests.client import RpcClient, RpcFailure, read_close
from tests.server import Server, pid_exists

PARSE_ERROR = ErrorCode.PARSE_ERROR
INVALID_REQUEST = ErrorCode.INVALID_REQUEST
METHOD_NOT_FOUND = ErrorCode.METHOD_NOT_FOUND
INVALID_PARAMS = ErrorCode.INVALID_PARAMS
NOT_FOUND = ErrorCode.NOT_FOUND
NO_SUCH_PROCESS = ErrorCode.NO_SUCH_PROCESS
PERMISSION_DENIED = ErrorCode.PERMISSION_DENIED
LIMIT_EXCEEDED = ErrorCode.LIMIT_EXCEEDED
PROCESS_EXITED = ErrorCode.PROCESS_EXITED
TIMEOUT = ErrorCode.TIMEOUT
SPAWN_FAILED = ErrorCode.SPAWN_FAILED
PROCESS_RUNNING = ErrorCode.PROCESS_RUNNING

MAX_STDIN_CHUNK = 65536  # as configured by the session server in conftest.py
LIMITED_MAX_PROCS = 3
LIMITED_MAX_MESSAGE_BYTES = 4096
UNUSED_PROC = 10**9


# -- helpers -------------------------------------------------------------------


def assert_usable(client: RpcClient) -> None:
    """The connection still answers a request."""
    answer = client.call("ping")
    assert isinstance(answer["time"], float)


def expect_error(
    client: RpcClient,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    code: int,
    words: tuple[str, ...] = (),
    errno_is: int | None = None,
) -> RpcFailure:
    """Call ``method``, check the error it gets, then check the connection still works."""
    failure = client.error_of(method, **(params or {}))
    assert failure.code == code, f"{method} {params}: {failure.code} {failure.message}"
    assert isinstance(failure.message, str) and failure.message.strip()
    for word in words:
        assert word.lower() in failure.message.lower(), f"{word!r} not in {failure.message!r}"
    if errno_is is not None:
        assert isinstance(failure.data, dict), failure.data
        assert failure.data["errno"] == errno_is, failure.data
    assert_usable(client)
    return failure


def raw_answer(client: RpcClient, frame: str) -> Any:
    """Send one text frame as is and return the next message (no process runs on ``client``)."""
    client.send_text(frame)
    return client.next_message()


def check_error_answer(answer: Any, *, code: int, request_id: Any, words: tuple[str, ...] = ()) -> None:
    assert isinstance(answer, dict), answer
    assert answer.get("jsonrpc") == "2.0", answer
    assert "id" in answer and answer["id"] == request_id, answer
    assert "result" not in answer, answer
    assert answer["error"]["code"] == code, answer
    message = answer["error"]["message"]
    assert isinstance(message, str) and message.strip()
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_exists(pid):
            return True
        time.sleep(0.02)
    return not pid_exists(pid)


@contextlib.contextmanager
def started(client: RpcClient, argv: list[str], **params: Any) -> Iterator[dict[str, Any]]:
    """Start a process; whatever happens, kill its group and see its pid gone."""
    result = client.call("start", argv=argv, **params)
    try:
        yield result
    finally:
        with contextlib.suppress(RpcFailure, websocket.WebSocketException, OSError):
            client.call("kill", proc=result["proc"])
        if not wait_gone(result["pid"]):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(result["pgid"], signal.SIGKILL)
            assert wait_gone(result["pid"]), f"pid {result['pid']} survived"


def exited(client: RpcClient, argv: list[str], **params: Any) -> dict[str, Any]:
    """Start a process and read until its exit; the answer to ``start``."""
    result = client.call("start", argv=argv, **params)
    collected = client.collect(result["proc"])
    assert collected.exit is not None
    return result


@pytest.fixture(scope="module")
def limited() -> Iterator[Server]:
    """A server with small limits: few processes per client, small frames."""
    server = Server(
        env={
            "PROCWIRE_KILL_GRACE": "1",
            "PROCWIRE_MAX_PROCS_PER_CLIENT": str(LIMITED_MAX_PROCS),
            "PROCWIRE_MAX_MESSAGE_BYTES": str(LIMITED_MAX_MESSAGE_BYTES),
        }
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- -32700: not JSON ------------------------------------------------------------


@pytest.mark.parametrize("frame", ["not json", '{"jsonrpc": "2.0", "id": 1, "method": "ping"', "", "[1, 2", "nul\x00l"])
def test_text_that_is_not_json_is_a_parse_error(rpc: RpcClient, frame: str) -> None:
    check_error_answer(raw_answer(rpc, frame), code=PARSE_ERROR, request_id=None, words=("parse",))
    assert_usable(rpc)


# -- -32600: JSON that is not a request ---------------------------------------------


@pytest.mark.parametrize(
    ("message", "request_id", "words"),
    [
        ({"jsonrpc": "1.0", "id": 7, "method": "ping"}, 7, ("jsonrpc",)),
        ({"id": 8, "method": "ping"}, 8, ("jsonrpc",)),
        ({"jsonrpc": 2.0, "id": 9, "method": "ping"}, 9, ("jsonrpc",)),
        ({"jsonrpc": "2.0", "id": 10}, 10, ("method",)),
        ({"jsonrpc": "2.0", "id": 11, "method": 5}, 11, ("method",)),
        ({"jsonrpc": "2.0", "id": 12, "method": None}, 12, ("method",)),
        (42, None, ("object",)),
        ("ping", None, ("object",)),
        (None, None, ("object",)),
        ([], None, ("batch",)),
        ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}, None, ("id",)),
        ({"jsonrpc": "2.0", "id": [1], "method": "ping"}, None, ("id",)),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, None, ("id",)),
    ],
    ids=[
        "jsonrpc-1.0",
        "jsonrpc-missing",
        "jsonrpc-number",
        "method-missing",
        "method-number",
        "method-null",
        "number",
        "string",
        "null",
        "empty-batch",
        "id-object",
        "id-array",
        "id-bool",
    ],
)
def test_json_that_is_not_a_request_is_an_invalid_request(
    rpc: RpcClient, message: Any, request_id: Any, words: tuple[str, ...]
) -> None:
    answer = raw_answer(rpc, json.dumps(message))
    assert isinstance(answer, dict), f"expected one error object, got {answer!r}"
    check_error_answer(answer, code=INVALID_REQUEST, request_id=request_id, words=words)
    assert_usable(rpc)


def test_string_and_fractional_ids_are_echoed(rpc: RpcClient) -> None:
    for request_id in ("abc", "", 1.5, -3, 0, 2**63):
        answer = raw_answer(rpc, json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "ping"}))
        assert answer["id"] == request_id and "time" in answer["result"], answer


def test_an_id_too_large_to_echo_exactly_is_refused(rpc: RpcClient) -> None:
    frame = '{"jsonrpc": "2.0", "id": 18446744073709551617, "method": "ping"}'
    rpc.send_text(frame)
    check_error_answer(rpc.next_message(), code=INVALID_REQUEST, request_id=None, words=("id",))
    assert_usable(rpc)


def test_binary_frame_is_an_invalid_request(rpc: RpcClient) -> None:
    rpc.ws.send_binary(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode())
    check_error_answer(rpc.next_message(), code=INVALID_REQUEST, request_id=None, words=("binary",))
    assert_usable(rpc)


# -- -32601: unknown method ----------------------------------------------------------


@pytest.mark.parametrize("name", ["no_such_method", "PING", "", "rpc.discover"])
def test_unknown_method(rpc: RpcClient, name: str) -> None:
    failure = expect_error(rpc, name, code=METHOD_NOT_FOUND)
    assert repr(name) in failure.message or name in failure.message


# -- -32602: bad params ----------------------------------------------------------------


def test_missing_params_member(rpc: RpcClient) -> None:
    """``start`` with no ``params`` at all: argv is required."""
    answer = rpc.response(rpc.request("start"))
    check_error_answer(answer, code=INVALID_PARAMS, request_id=answer["id"], words=("argv",))
    assert_usable(rpc)


def test_params_that_are_not_an_object(rpc: RpcClient) -> None:
    for params in (["ls"], "ls", 5, None):
        message = {"jsonrpc": "2.0", "id": 99, "method": "start", "params": params}
        check_error_answer(raw_answer(rpc, json.dumps(message)), code=INVALID_PARAMS, request_id=99)
        assert_usable(rpc)


@pytest.mark.parametrize(
    ("method", "params", "words"),
    [
        # missing
        ("start", {}, ("argv", "required")),
        ("lookpath", {}, ("file",)),
        ("write", {"proc": UNUSED_PROC}, ("data",)),
        ("signal", {"proc": UNUSED_PROC}, ("signal",)),
        ("wait", {}, ("proc",)),
        ("kill", {}, ("proc",)),
        ("find", {}, ("pid",)),
        # wrong types
        ("start", {"argv": "ls"}, ("argv",)),
        ("start", {"argv": ["echo", 1]}, ("argv[1]",)),
        ("start", {"argv": [None]}, ("argv[0]",)),
        ("start", {"argv": ["true"], "timeout": "5"}, ("timeout",)),
        ("start", {"argv": ["true"], "env": {"A": 1}}, ("env",)),
        ("start", {"argv": ["true"], "env": ["A=1"]}, ("env",)),
        ("start", {"argv": ["true"], "clear_env": 1}, ("clear_env",)),
        ("start", {"argv": ["true"], "clear_env": "yes"}, ("clear_env",)),
        ("start", {"argv": ["true"], "cwd": 5}, ("cwd",)),
        ("start", {"argv": ["true"], "stdin": "file"}, ("stdin",)),
        ("start", {"argv": ["true"], "stderr": "pipe2"}, ("stderr",)),
        ("start", {"argv": ["true"], "encoding": "utf-16"}, ("encoding",)),
        ("start", {"argv": ["true"], "name": 3}, ("name",)),
        ("kill", {"proc": True}, ("proc",)),
        ("kill", {"proc": "1"}, ("proc",)),
        ("kill", {"proc": 1.0}, ("proc",)),
        ("wait", {"proc": UNUSED_PROC, "timeout": "1"}, ("timeout",)),
        ("wait", {"proc": UNUSED_PROC, "timeout": True}, ("timeout",)),
        ("signal", {"proc": UNUSED_PROC, "signal": "TERM", "group": "no"}, ("group",)),
        ("signal", {"proc": UNUSED_PROC, "signal": 15.0}, ("signal",)),
        ("signal", {"proc": UNUSED_PROC, "signal": True}, ("signal",)),
        ("write", {"proc": UNUSED_PROC, "data": 5}, ("data",)),
        ("find", {"pid": "1"}, ("pid",)),
        ("run", {"argv": ["true"], "max_output": "1"}, ("max_output",)),
        ("run", {"argv": ["true"], "input": 5}, ("input",)),
        # out of range
        ("start", {"argv": []}, ("argv",)),
        ("start", {"argv": ["true"], "timeout": -1}, ("timeout",)),
        ("start", {"argv": ["true"], "timeout": 0}, ("timeout",)),
        ("start", {"argv": ["true"], "cwd": ""}, ("cwd",)),
        ("lookpath", {"file": ""}, ("file",)),
        ("kill", {"proc": 0}, ("proc",)),
        ("kill", {"proc": -1}, ("proc",)),
        ("wait", {"proc": UNUSED_PROC, "timeout": -0.5}, ("timeout",)),
        ("stop", {"proc": UNUSED_PROC, "grace": -1}, ("grace",)),
        ("find", {"pid": 0}, ("pid",)),
        ("find", {"pid": -5}, ("pid",)),
        ("run", {"argv": ["true"], "max_output": -1}, ("max_output",)),
        # signals
        ("signal", {"proc": UNUSED_PROC, "signal": "SIGNOPE"}, ("signal", "SIGNOPE")),
        ("signal", {"proc": UNUSED_PROC, "signal": "NOPE"}, ("signal", "NOPE")),
        ("signal", {"proc": UNUSED_PROC, "signal": ""}, ("signal",)),
        ("signal", {"proc": UNUSED_PROC, "signal": 999}, ("signal", "999")),
        ("signal", {"proc": UNUSED_PROC, "signal": 0}, ("signal",)),
        ("signal", {"proc": UNUSED_PROC, "signal": -9}, ("signal",)),
        ("stop", {"proc": UNUSED_PROC, "signal": "SIGNOPE"}, ("signal",)),
        # unknown extra params
        ("ping", {"extra": 1}, ("extra",)),
        ("list", {"all": True}, ("all",)),
        ("start", {"argv": ["true"], "args": ["x"]}, ("args",)),
        ("kill", {"proc": UNUSED_PROC, "signal": "TERM"}, ("signal",)),
        ("lookpath", {"file": "sh", "path": "/bin"}, ("path",)),
        # cross-field
        ("run", {"argv": ["cat"], "stdin": "null", "input": "x"}, ("input",)),
        ("start", {"argv": ["true"], "env": {"A=B": "1"}}, ("env",)),
        ("start", {"argv": ["true"], "env": {"": "1"}}, ("env",)),
        ("start", {"argv": ["true"], "env": {"A": "x\x00y"}}, ("env",)),
        ("start", {"argv": ["true"], "cwd": "/tmp\x00x"}, ("cwd",)),
    ],
)
def test_invalid_params(rpc: RpcClient, method: str, params: dict[str, Any], words: tuple[str, ...]) -> None:
    expect_error(rpc, method, params, code=INVALID_PARAMS, words=words)


def test_invalid_params_start_nothing(rpc: RpcClient) -> None:
    """A refused ``start`` leaves no process behind."""
    argv = ["sleep", "30.123"]
    expect_error(rpc, "start", {"argv": argv, "timeout": -1}, code=INVALID_PARAMS)
    expect_error(rpc, "start", {"argv": argv, "bogus": 1}, code=INVALID_PARAMS)
    assert all(p["argv"] != argv for p in rpc.call("list")["processes"])


def test_base64_that_does_not_decode(rpc: RpcClient) -> None:
    with started(rpc, ["cat"]) as proc:
        for data in ("!!!not base64!!!", "abc", "YW=J"):
            expect_error(
                rpc,
                "write",
                {"proc": proc["proc"], "data": data, "encoding": "base64"},
                code=INVALID_PARAMS,
                words=("base64",),
            )
        # still a working stdin after the refusals
        assert rpc.call("write", proc=proc["proc"], data="aGk=", encoding="base64") == {"written": 2}
        expect_error(
            rpc, "write", {"proc": proc["proc"], "data": "x", "encoding": "hex"}, code=INVALID_PARAMS, words=("enc",)
        )
    expect_error(
        rpc,
        "run",
        {"argv": ["cat"], "input": "%%%", "input_encoding": "base64"},
        code=INVALID_PARAMS,
        words=("input",),
    )


def test_notification_with_bad_input_gets_no_answer(rpc: RpcClient) -> None:
    """Notifications are never answered, even when they fail; the next request's answer comes next."""
    rpc.send_json({"jsonrpc": "2.0", "method": "no_such_method"})
    rpc.send_json({"jsonrpc": "2.0", "method": "start", "params": {"argv": []}})
    rpc.send_json({"jsonrpc": "2.0", "method": "kill", "params": {"proc": UNUSED_PROC}})
    rpc.send_json({"jsonrpc": "2.0", "method": "ping"})
    rpc.send_json({"jsonrpc": "2.0", "id": "after", "method": "ping"})
    answer = rpc.next_message()
    assert answer["id"] == "after" and "result" in answer, answer
    assert not rpc.pending


# -- batches ------------------------------------------------------------------------


def test_mixed_batch(rpc: RpcClient) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "ping"},
        {"jsonrpc": "2.0", "method": "no_such_method"},
        7,
        {"jsonrpc": "2.0", "id": "u", "method": "no_such_method"},
        {"jsonrpc": "2.0", "id": 3, "method": "start", "params": {"argv": []}},
        {"jsonrpc": "2.0", "id": 4, "method": "kill", "params": {"proc": UNUSED_PROC}},
    ]
    answer = raw_answer(rpc, json.dumps(batch))
    assert isinstance(answer, list), answer
    assert len(answer) == 5, answer
    by_id: dict[Any, dict[str, Any]] = {}
    for item in answer:
        assert item["jsonrpc"] == "2.0"
        assert item["id"] not in by_id, answer
        by_id[item["id"]] = item
    assert set(by_id) == {1, None, "u", 3, 4}
    assert "time" in by_id[1]["result"]
    check_error_answer(by_id[None], code=INVALID_REQUEST, request_id=None)
    check_error_answer(by_id["u"], code=METHOD_NOT_FOUND, request_id="u", words=("no_such_method",))
    check_error_answer(by_id[3], code=INVALID_PARAMS, request_id=3, words=("argv",))
    check_error_answer(by_id[4], code=NO_SUCH_PROCESS, request_id=4)
    assert_usable(rpc)


def test_batch_of_invalid_items(rpc: RpcClient) -> None:
    answer = raw_answer(rpc, json.dumps([1, "x", {"jsonrpc": "1.0", "id": 5, "method": "ping"}]))
    assert isinstance(answer, list) and len(answer) == 3, answer
    assert sorted(item["error"]["code"] for item in answer) == [INVALID_REQUEST] * 3
    assert sorted((item["id"] is None, item["id"]) for item in answer) == [(False, 5), (True, None), (True, None)]
    assert_usable(rpc)


def test_batch_with_an_answer_that_waits(rpc: RpcClient) -> None:
    """A ``wait`` that times out inside a batch: the whole array comes once it is known."""
    with started(rpc, ["sleep", "30"]) as proc:
        batch = [
            {"jsonrpc": "2.0", "id": "w", "method": "wait", "params": {"proc": proc["proc"], "timeout": 0.2}},
            {"jsonrpc": "2.0", "id": "p", "method": "ping"},
        ]
        answer = raw_answer(rpc, json.dumps(batch))
        assert isinstance(answer, list) and len(answer) == 2, answer
        by_id = {item["id"]: item for item in answer}
        check_error_answer(by_id["w"], code=TIMEOUT, request_id="w")
        assert "time" in by_id["p"]["result"]
        assert_usable(rpc)


def test_all_notification_batch_gets_no_answer(rpc: RpcClient) -> None:
    rpc.send_json([{"jsonrpc": "2.0", "method": "ping"}, {"jsonrpc": "2.0", "method": "no_such_method"}])
    rpc.send_json({"jsonrpc": "2.0", "id": "after", "method": "ping"})
    answer = rpc.next_message()
    assert isinstance(answer, dict) and answer["id"] == "after" and "result" in answer, answer


# -- -32001 NOT_FOUND ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["procwire-no-such-program", "/nonexistent/procwire-no-such-program", "./nope"])
def test_start_of_missing_executable(rpc: RpcClient, name: str) -> None:
    expect_error(rpc, "start", {"argv": [name]}, code=NOT_FOUND, words=(name.rsplit("/", 1)[-1],), errno_is=2)
    expect_error(rpc, "run", {"argv": [name]}, code=NOT_FOUND, errno_is=errno.ENOENT)


@pytest.mark.parametrize("name", ["procwire-no-such-program", "/nonexistent/procwire-no-such-program"])
def test_lookpath_of_missing_executable(rpc: RpcClient, name: str) -> None:
    expect_error(rpc, "lookpath", {"file": name}, code=NOT_FOUND, words=(name,), errno_is=errno.ENOENT)


def test_missing_executable_with_empty_path(rpc: RpcClient) -> None:
    """``sh`` is not found when the child's PATH has no directory holding it."""
    expect_error(rpc, "start", {"argv": ["sh"], "env": {"PATH": "/nonexistent"}}, code=NOT_FOUND, errno_is=errno.ENOENT)


# -- -32002 NO_SUCH_PROCESS ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("write", {"data": "x"}),
        ("close_stdin", {}),
        ("signal", {"signal": "TERM"}),
        ("kill", {}),
        ("stop", {}),
        ("wait", {"timeout": 0.1}),
        ("release", {}),
    ],
)
def test_unknown_proc(rpc: RpcClient, method: str, extra: dict[str, Any]) -> None:
    expect_error(rpc, method, {"proc": UNUSED_PROC, **extra}, code=NO_SUCH_PROCESS, words=(str(UNUSED_PROC),))


def test_released_proc(rpc: RpcClient) -> None:
    proc = exited(rpc, ["true"])["proc"]
    assert rpc.call("release", proc=proc) == {}
    for method, extra in [("wait", {}), ("release", {}), ("kill", {}), ("write", {"data": "x"})]:
        expect_error(rpc, method, {"proc": proc, **extra}, code=NO_SUCH_PROCESS, words=(str(proc),))
    assert all(p["proc"] != proc for p in rpc.call("list")["processes"])


def test_find_of_a_pid_that_is_not_ours(rpc: RpcClient) -> None:
    for pid in (1, os.getpid(), 2**22 + 12345):
        expect_error(rpc, "find", {"pid": pid}, code=NO_SUCH_PROCESS, words=(str(pid),))


def test_find_of_a_released_process(rpc: RpcClient) -> None:
    result = exited(rpc, ["true"])
    assert rpc.call("find", pid=result["pid"])["proc"] == result["proc"]
    rpc.call("release", proc=result["proc"])
    expect_error(rpc, "find", {"pid": result["pid"]}, code=NO_SUCH_PROCESS)


# -- -32003 PERMISSION_DENIED ----------------------------------------------------------


def test_file_without_execute_bit(rpc: RpcClient, tmp_path: Path) -> None:
    program = tmp_path / "not-executable"
    program.write_text("#!/bin/sh\necho hi\n")
    program.chmod(0o644)
    expect_error(rpc, "start", {"argv": [str(program)]}, code=PERMISSION_DENIED, words=("not-executable",), errno_is=13)
    expect_error(rpc, "lookpath", {"file": str(program)}, code=PERMISSION_DENIED, errno_is=errno.EACCES)
    expect_error(
        rpc,
        "start",
        {"argv": ["./not-executable"], "cwd": str(tmp_path)},
        code=PERMISSION_DENIED,
        errno_is=errno.EACCES,
    )


def test_directory_as_argv0(rpc: RpcClient, tmp_path: Path) -> None:
    expect_error(rpc, "start", {"argv": [str(tmp_path)]}, code=PERMISSION_DENIED, errno_is=errno.EACCES)
    expect_error(rpc, "lookpath", {"file": str(tmp_path)}, code=PERMISSION_DENIED, errno_is=errno.EACCES)


def test_missing_cwd(rpc: RpcClient, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    failure = expect_error(
        rpc, "start", {"argv": ["true"], "cwd": str(missing)}, code=PERMISSION_DENIED, errno_is=errno.ENOENT
    )
    assert "cwd" in failure.message and "missing" in failure.message
    expect_error(rpc, "run", {"argv": ["true"], "cwd": str(missing)}, code=PERMISSION_DENIED, errno_is=errno.ENOENT)


def test_cwd_that_is_a_file(rpc: RpcClient, tmp_path: Path) -> None:
    plain = tmp_path / "plain-file"
    plain.write_text("x")
    failure = expect_error(
        rpc, "start", {"argv": ["true"], "cwd": str(plain)}, code=PERMISSION_DENIED, errno_is=errno.ENOTDIR
    )
    assert "cwd" in failure.message and "plain-file" in failure.message


# -- -32004 LIMIT_EXCEEDED ---------------------------------------------------------------


def test_too_many_processes(limited: Server) -> None:
    with RpcClient(limited.url, limited.token) as client, contextlib.ExitStack() as stack:
        assert client.hello["params"]["limits"]["max_procs"] == LIMITED_MAX_PROCS
        procs = [stack.enter_context(started(client, ["sleep", "30"])) for _ in range(LIMITED_MAX_PROCS)]
        expect_error(client, "start", {"argv": ["sleep", "30"]}, code=LIMIT_EXCEEDED, words=(str(LIMITED_MAX_PROCS),))
        expect_error(client, "run", {"argv": ["true"]}, code=LIMIT_EXCEEDED)
        assert sum(p["state"] == "running" for p in client.call("list")["processes"]) == LIMITED_MAX_PROCS

        # the limit is per connection: another one may still start processes
        with RpcClient(limited.url, limited.token) as other:
            collected = other.run_to_exit(["true"])
            assert collected.exit is not None and collected.exit["code"] == 0

        # an exited process no longer counts
        client.call("kill", proc=procs[0]["proc"])
        assert client.collect(procs[0]["proc"]).exit is not None
        collected = client.run_to_exit(["true"])
        assert collected.exit is not None and collected.exit["code"] == 0


def test_stdin_chunk_too_large(rpc: RpcClient) -> None:
    assert rpc.hello["params"]["limits"]["max_stdin_chunk"] == MAX_STDIN_CHUNK
    with started(rpc, ["cat"]) as proc:
        expect_error(
            rpc,
            "write",
            {"proc": proc["proc"], "data": "x" * (MAX_STDIN_CHUNK + 1)},
            code=LIMIT_EXCEEDED,
            words=(str(MAX_STDIN_CHUNK),),
        )
        # UTF-8 bytes count, not characters
        expect_error(
            rpc, "write", {"proc": proc["proc"], "data": "é" * (MAX_STDIN_CHUNK // 2 + 1)}, code=LIMIT_EXCEEDED
        )
        too_big = base64.b64encode(b"\0" * (MAX_STDIN_CHUNK + 1)).decode()
        expect_error(rpc, "write", {"proc": proc["proc"], "data": too_big, "encoding": "base64"}, code=LIMIT_EXCEEDED)
        assert rpc.call("write", proc=proc["proc"], data="x" * MAX_STDIN_CHUNK) == {"written": MAX_STDIN_CHUNK}


# -- -32005 PROCESS_EXITED --------------------------------------------------------------


def test_write_signal_kill_to_an_exited_process(rpc: RpcClient) -> None:
    proc = exited(rpc, ["true"])["proc"]
    expect_error(rpc, "write", {"proc": proc, "data": "x"}, code=PROCESS_EXITED, words=("exited",))
    expect_error(rpc, "signal", {"proc": proc, "signal": "TERM"}, code=PROCESS_EXITED, words=("exited",))
    expect_error(rpc, "signal", {"proc": proc, "signal": 9, "group": False}, code=PROCESS_EXITED)
    expect_error(rpc, "kill", {"proc": proc}, code=PROCESS_EXITED, words=("exited",))
    expect_error(rpc, "close_stdin", {"proc": proc}, code=PROCESS_EXITED)
    # still known: wait answers with its status, release forgets it
    assert rpc.call("wait", proc=proc)["code"] == 0
    assert rpc.call("release", proc=proc) == {}


def test_write_after_close_stdin(rpc: RpcClient) -> None:
    with started(rpc, ["sleep", "30"]) as proc:
        assert rpc.call("write", proc=proc["proc"], data="before") == {"written": 6}
        assert rpc.call("close_stdin", proc=proc["proc"]) == {}
        expect_error(rpc, "write", {"proc": proc["proc"], "data": "x"}, code=PROCESS_EXITED, words=("stdin",))
        assert rpc.call("find", pid=proc["pid"])["state"] == "running"


def test_write_after_the_child_closed_its_stdin(rpc: RpcClient) -> None:
    """The child closed its end: the write fails with EPIPE, the process still runs."""
    with started(rpc, ["sh", "-c", "exec 0<&-; echo ready; exec sleep 30"]) as proc:
        output = rpc.next_message()  # "ready": stdin is closed by now
        assert output["method"] == "output" and output["params"]["data"] == "ready\n", output
        expect_error(rpc, "write", {"proc": proc["proc"], "data": "x"}, code=PROCESS_EXITED, errno_is=errno.EPIPE)
        expect_error(rpc, "write", {"proc": proc["proc"], "data": "x"}, code=PROCESS_EXITED, words=("stdin",))
        assert rpc.call("find", pid=proc["pid"])["state"] == "running"


def test_write_to_a_process_with_stdin_null(rpc: RpcClient) -> None:
    with started(rpc, ["sleep", "30"], stdin="null") as proc:
        expect_error(rpc, "write", {"proc": proc["proc"], "data": "x"}, code=PROCESS_EXITED, words=("null",))


# -- -32006 TIMEOUT -----------------------------------------------------------------------


def test_wait_times_out_and_the_process_keeps_running(rpc: RpcClient) -> None:
    with started(rpc, ["sleep", "30"]) as proc:
        began = time.monotonic()
        expect_error(rpc, "wait", {"proc": proc["proc"], "timeout": 0.2}, code=TIMEOUT, words=("running",))
        assert 0.15 <= time.monotonic() - began < 5
        expect_error(rpc, "wait", {"proc": proc["proc"], "timeout": 0}, code=TIMEOUT)
        assert pid_exists(proc["pid"])
        assert rpc.call("find", pid=proc["pid"])["state"] == "running"
        rpc.call("kill", proc=proc["proc"])
        status = rpc.call("wait", proc=proc["proc"], timeout=10)
        assert status["signal"] == "SIGKILL" and status["code"] is None and status["timed_out"] is False


# -- -32007 SPAWN_FAILED ------------------------------------------------------------------


def test_executable_that_is_not_a_valid_binary(rpc: RpcClient, tmp_path: Path) -> None:
    program = tmp_path / "garbage"
    program.write_bytes(b"this is not a program and has no shebang\n")
    program.chmod(0o755)
    assert rpc.call("lookpath", file=str(program)) == {"path": str(program)}
    failure = expect_error(rpc, "start", {"argv": [str(program)]}, code=SPAWN_FAILED, errno_is=errno.ENOEXEC)
    assert "garbage" in failure.message
    expect_error(rpc, "run", {"argv": [str(program)]}, code=SPAWN_FAILED, errno_is=errno.ENOEXEC)
    assert all(p["argv"] != [str(program)] for p in rpc.call("list")["processes"])


# -- -32008 PROCESS_RUNNING ---------------------------------------------------------------


def test_release_of_a_running_process(rpc: RpcClient) -> None:
    with started(rpc, ["sleep", "30"]) as proc:
        expect_error(rpc, "release", {"proc": proc["proc"]}, code=PROCESS_RUNNING, words=("running",))
        assert rpc.call("find", pid=proc["pid"])["state"] == "running"


@pytest.mark.parametrize(
    ("method", "params"),
    [("start", {"argv": ["echo", "a\x00b"]}), ("start", {"argv": ["ec\x00ho"]}), ("lookpath", {"file": "s\x00h"})],
)
def test_nul_byte_in_argv_is_invalid_params(rpc: RpcClient, method: str, params: dict[str, Any]) -> None:
    expect_error(rpc, method, params, code=INVALID_PARAMS)


# -- frames too large -------------------------------------------------------------------------


def test_frame_larger_than_max_message_bytes_closes_with_1009(limited: Server) -> None:
    with RpcClient(limited.url, limited.token) as bystander, RpcClient(limited.url, limited.token) as client:
        assert client.hello["params"]["limits"]["max_message_bytes"] == LIMITED_MAX_MESSAGE_BYTES
        # just under the limit is fine
        padded = json.dumps({"jsonrpc": "2.0", "id": "small", "method": "ping"})
        padded = padded[:-1] + " " * (LIMITED_MAX_MESSAGE_BYTES - len(padded) - 1) + "}"
        assert len(padded) == LIMITED_MAX_MESSAGE_BYTES - 1
        assert raw_answer(client, padded)["id"] == "small"

        with started(bystander, ["sleep", "30"]) as kept, started(client, ["sleep", "30"]) as doomed:
            client.send_json({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "y" * 8000}})
            code, reason = read_close(client.ws)
            assert code == 1009, reason
            # the closed connection's process is stopped as on any disconnect
            assert wait_gone(doomed["pid"]), "the process of the closed connection survived"
            # other connections are unaffected, their processes too
            assert_usable(bystander)
            assert bystander.call("find", pid=kept["pid"])["state"] == "running"
            with RpcClient(limited.url, limited.token) as fresh:
                assert_usable(fresh)


def test_a_fragmented_text_message_is_measured_in_bytes(limited: Server) -> None:
    """Three fragments of 1,200 three-byte characters each: 3,600 characters, 10,800 bytes. The limit
    is in bytes, so the second fragment ends the connection with 1009 (characters were counted: it passed)."""
    piece = "€" * 1200
    assert len(piece.encode()) < LIMITED_MAX_MESSAGE_BYTES  # each fragment fits...
    assert 3 * len(piece) < LIMITED_MAX_MESSAGE_BYTES < 3 * len(piece.encode())  # ...in characters the whole too
    with RpcClient(limited.url, limited.token) as client:
        frames = [
            websocket.ABNF.create_frame(piece.encode(), websocket.ABNF.OPCODE_TEXT, fin=0),
            websocket.ABNF.create_frame(piece.encode(), websocket.ABNF.OPCODE_CONT, fin=0),
            websocket.ABNF.create_frame(piece.encode(), websocket.ABNF.OPCODE_CONT, fin=1),
        ]
        for frame in frames:
            with contextlib.suppress(OSError):  # the server may close before the last fragment
                client.ws.send_frame(frame)
        code, reason = read_close(client.ws)
        assert code == 1009, reason


@pytest.mark.parametrize("method", ["start", "lookpath"])
def test_a_long_name_is_cut_in_the_error(rpc: RpcClient, method: str) -> None:
    """A 300 KB name is not echoed back whole: the message and its data name its start and its length."""
    name = "procwire-no-such-" + "x" * 300_000
    params = {"argv": [name]} if method == "start" else {"file": name}
    failure = expect_error(rpc, method, params, code=NOT_FOUND, words=("procwire-no-such-", "300,017 characters"))
    assert len(failure.message) < 400
    assert isinstance(failure.data, dict) and len(failure.data["filename"]) < 300


def test_not_found_in_path_is_said_once(rpc: RpcClient) -> None:
    failure = expect_error(rpc, "lookpath", {"file": "procwire-no-such-program"}, code=NOT_FOUND)
    assert failure.message == "executable not found in PATH: procwire-no-such-program"


def test_the_1009_close_is_readable_by_a_client_that_sends_before_it_reads(limited: Server) -> None:
    """A 16 MB message against a 4 KB limit, sent whole before reading, as a single-threaded client
    does: the server closes at the header but reads and drops the rest of the message (bounded)
    before closing its socket, so the send completes and the client then reads the 1009 (the
    socket was closed with unread bytes: the send failed with a connection reset)."""
    with RpcClient(limited.url, limited.token) as client:
        client.ws.send_binary(b"x" * 16_000_000)
        code, reason = read_close(client.ws)
        assert code == 1009, reason
