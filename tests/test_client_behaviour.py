"""One behaviour suite for the three clients (sync, asyncio and JavaScript) against the real server.

Each test is written once and runs for each client (``kind``, tests/client_kinds.py).
The resume tests are in tests/test_client_resume.py.
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

import pytest

import procwire_client as pw
from tests.client_kinds import BOUND, Connect, collect, read_until
from tests.server import Server, pid_exists, wait_until


def test_hello_ping_lookpath(any_client: Any) -> None:
    assert any_client.hello["server"] == "procwire"
    assert len(any_client.client_id or "") == 16
    assert any_client.ping() > 0
    assert any_client.lookpath("sh").endswith("/sh")


def test_bad_token_is_an_authentication_error(new_client: Connect) -> None:
    with pytest.raises(pw.AuthenticationError) as raised:
        new_client(token="wrong-token")
    assert raised.value.status == 401 and "missing or wrong token" in str(raised.value)


def test_run_collects_output_input_and_exit_code(any_client: Any, tmp_path: os.PathLike[str]) -> None:
    result = any_client.run(
        ["sh", "-c", 'tr a-z A-Z; echo "$G" >&2; pwd; exit 3'], input="hi\n", env={"G": "g"}, cwd=tmp_path
    )
    assert (result.code, result.stdout, result.stderr) == (3, f"HI\n{tmp_path}\n".encode(), b"g\n")
    assert result.truncated == {"stdout": False, "stderr": False}


def test_run_past_max_output_raises_unless_truncate(any_client: Any) -> None:
    argv = ["sh", "-c", "printf 'abc\\377def'; printf '\\000' >&2"]
    with pytest.raises(pw.OutputTruncated) as raised:
        any_client.run(argv, max_output=4)
    truncated = any_client.run(argv, max_output=4, on_overflow="truncate")
    for result in (raised.value.result, truncated):
        assert (result.stdout, result.stderr, result.truncated) == (
            b"abc\xff",
            b"\x00",
            {"stdout": True, "stderr": False},
        )


def test_run_input_larger_than_one_message_is_streamed(any_client: Any) -> None:
    data = os.urandom(1 << 20) * 3
    assert any_client.run(["wc", "-c"], input=data).stdout.strip() == str(len(data)).encode()
    with pytest.raises(pw.OutputTruncated) as raised:
        any_client.run(["cat"], input=data, max_output=10)
    assert raised.value.result.stdout == data[:10]


def test_start_write_iterate_wait(any_client: Any) -> None:
    with any_client.start(["cat"]) as process:
        assert process.write("héllo\n") == 7
        assert process.write(b"\x00\xffraw") == 5
        process.close_stdin()
        assert collect(process) == {"stdout": "héllo\n".encode() + b"\x00\xffraw", "stderr": b""}
        status = process.wait(BOUND)
        assert status.ok and process.exit_status == status and process.offsets["stdout"] == 12
        with pytest.raises(pw.ProcessExited):
            process.write(b"late")


@pytest.mark.parametrize("binary", [False, True])
def test_streams_apart_in_json_and_binary(any_client: Any, binary: bool) -> None:
    process = any_client.start(["sh", "-c", "printf 'o\\377'; printf 'e\\000' >&2; exit 4"], binary=binary)
    assert collect(process) == {"stdout": b"o\xff", "stderr": b"e\x00"}
    assert process.wait(BOUND).code == 4
    assert process.offsets == {"stdout": 2, "stderr": 2}


def test_large_binary_stdin_round_trip(any_client: Any) -> None:
    data = os.urandom(3 << 20)
    with any_client.start(["cat"], binary=True) as process:
        assert process.communicate(data, timeout=BOUND) == (data, b"")


def test_many_processes_are_routed_apart(any_client: Any) -> None:
    processes = [any_client.start(["sh", "-c", f"for i in 1 2 3; do echo p{n}-$i; done; exit {n}"]) for n in range(6)]
    for n, process in enumerate(processes):
        assert collect(process)["stdout"].decode().split() == [f"p{n}-{i}" for i in (1, 2, 3)]
        assert process.wait(BOUND).code == n


def test_timeouts_leave_the_process_running(any_client: Any) -> None:
    with any_client.start(["sleep", "30"]) as process:
        with pytest.raises(pw.Timeout):
            process.wait(0.2)
        with pytest.raises(pw.Timeout):
            list(process.iter_output(0.2))
        with pytest.raises(pw.Timeout):
            any_client.wait(process.proc, 0.2)
        assert process.running
        assert process.stop("SIGTERM", 1).signal == "SIGTERM"


def test_typed_errors(any_client: Any) -> None:
    with pytest.raises(pw.NotFound) as not_found:
        any_client.start(["no-such-program"])
    assert not_found.value.data == {"errno": 2, "filename": "no-such-program"}
    with pytest.raises(pw.NoSuchProcess):
        any_client.signal(999_999, "TERM")
    with pytest.raises(pw.MethodNotFound):
        any_client.call("frobnicate")
    process = any_client.start(["sleep", "30"])
    with pytest.raises(pw.ProcessRunning):
        process.release()
    process.kill()
    assert process.wait(BOUND).signal == "SIGKILL"
    with pytest.raises(pw.ProcessExited):
        process.kill()
    process.release()
    assert any_client.ping() > 0


def test_refused_binary_stdin_lands_on_the_process(any_client: Any) -> None:
    with any_client.start(["sleep", "30"]) as process:
        process.close_stdin()
        with pytest.raises(pw.ProcessExited, match="stdin"):
            process.write(b"x", binary=True)  # sync: sent, refused later; async and js: refused here
            process.flush(BOUND)
        assert wait_until(lambda: process.stdin_error is not None, BOUND)
        assert isinstance(process.stdin_error, pw.ProcessExited)


def test_snapshot_attach_yields_the_screen_first(any_client: Any) -> None:
    with any_client.start(
        ["sh", "-c", "printf 'hello screen'; read x; printf ' after'; sleep 30"], pty=(5, 40), buffer=1 << 16
    ) as first:
        read_until(first, b"hello screen")
        again = any_client.attach(first.proc, snapshot=True)
        assert again.attachment.extra.get("screen") is True
        stream, screen = next(iter(again.iter_output(BOUND)))
        assert stream == "screen" and b"hello screen" in screen
        again.write("go\n")
        assert b" after" in read_until(again, b" after")
        assert again.offsets["stdout"] > len(b"hello screen")


def test_kept_process_replays_to_a_new_connection(new_client: Connect) -> None:
    first = new_client()
    kept = first.start(["sh", "-c", "echo one; read x; echo two; sleep 30"], on_disconnect="keep")
    read_until(kept, b"one\n")
    first.close()
    second = new_client()
    try:
        attached = second.attach(kept.proc)
        assert attached.attachment.state == "running" and not attached.attachment.truncated
        assert read_until(attached, b"one\n") == b"one\n"  # the replay
        attached.write("go\n")
        assert read_until(attached, b"two\n") == b"two\n"  # live
        assert attached.offsets["stdout"] == 8
        attached.detach()
        assert list(attached) == []
        again = second.attach(kept.proc, offset={"stdout": 4, "stderr": 0}, binary=True)
        assert read_until(again, b"two\n") == b"two\n"
    finally:
        second.kill(kept.proc)
    assert wait_until(lambda: not pid_exists(kept.pid))


def test_operator_disconnect_is_a_connection_error(new_client: Connect, server: Server) -> None:
    connected = new_client()
    client_id = connected.client_id  # read now: once the connection is gone a client may forget it
    process = connected.start(["sleep", "30"])
    request = urllib.request.Request(
        f"{server.http}/api/clients/{client_id}",
        method="DELETE",
        headers={"Authorization": f"Bearer {server.token}"},
    )
    with urllib.request.urlopen(request, timeout=BOUND) as answer:
        assert json.load(answer) == {"closed": client_id}
    with pytest.raises(pw.ProcwireConnectionError) as raised:
        process.wait(BOUND)
    assert raised.value.close_code == 4000 and "disconnected by an operator" in str(raised.value)
    with pytest.raises(pw.ProcwireConnectionError):
        connected.ping()
    assert connected.closed
    assert wait_until(lambda: not pid_exists(process.pid))
