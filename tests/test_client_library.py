"""The procwire_client library against the real server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

import procwire_client as pw
from app.errors import ErrorCode
from procwire_client.errors import ERRORS_BY_CODE
from tests.client_kinds import read_until
from tests.server import ROOT, Server, free_port, pid_exists, wait_until

BOUND = 15.0  # seconds: every wait in these tests is bounded


def kill_if_running(client: pw.Client, proc: int) -> None:
    with contextlib.suppress(pw.ProcessExited, pw.NoSuchProcess):
        client.kill(proc)


def collect(process: pw.Process) -> dict[str, bytes]:
    streams = {"stdout": b"", "stderr": b""}
    for stream, data in process.iter_output(BOUND):
        streams[stream] += data
    return streams


# -- connection -----------------------------------------------------------------------------


def test_hello_ping_lookpath(lib: pw.Client) -> None:
    assert lib.hello["server"] == "procwire"
    assert len(lib.client_id or "") == 16
    assert abs(lib.ping() - time.time()) < 5
    assert lib.lookpath("sh").endswith("/sh")
    assert lib.write_chunk <= lib.hello["limits"]["max_stdin_chunk"]


def test_bad_token_is_an_authentication_error(server: Server) -> None:
    with pytest.raises(pw.AuthenticationError) as raised:
        pw.Client(server.url, "wrong-token")
    assert raised.value.status == 401
    assert isinstance(raised.value, ConnectionError)
    assert "missing or wrong token" in str(raised.value)


def test_nothing_listening_is_a_connection_error() -> None:
    with pytest.raises(pw.ProcwireConnectionError, match="cannot connect"):
        pw.Client(f"ws://127.0.0.1:{free_port()}/ws", "t", connect_timeout=5)


def test_url_and_token_from_the_environment(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCWIRE_URL", server.url)
    monkeypatch.setenv("PROCWIRE_TOKEN", server.token)
    with pw.Client() as connected:
        assert connected.ping() > 0


def test_importable_without_flask_or_gevent() -> None:
    code = (
        "import sys\n"
        "for name in ('flask', 'flask_sock', 'gevent', 'gunicorn', 'simple_websocket', 'pydantic', 'orjson'):\n"
        "    sys.modules[name] = None\n"
        "import procwire_client, procwire_client.cli\n"
        "print(procwire_client.Client.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=BOUND)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Client"


# -- run --------------------------------------------------------------------------------------


def test_run_collects_output_and_exit_code(lib: pw.Client) -> None:
    result = lib.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.code, result.signal, result.exit_code) == (3, None, 3)
    assert (result.stdout, result.stderr) == (b"out\n", b"err\n")
    assert result.truncated == {"stdout": False, "stderr": False}
    assert not result.ok


def test_run_with_input_env_cwd(lib: pw.Client, tmp_path: os.PathLike[str]) -> None:
    result = lib.run(
        ["sh", "-c", 'tr a-z A-Z; echo "$GREETING $(pwd)"'], input="hello\n", env={"GREETING": "hi"}, cwd=tmp_path
    )
    assert result.ok
    assert result.stdout == f"HELLO\nhi {tmp_path}\n".encode()


def test_run_binary_output_and_truncation(lib: pw.Client) -> None:
    """Past max_output run raises OutputTruncated with the partial result, unless told to truncate."""
    argv = ["sh", "-c", "printf 'abc\\377def'; printf '\\000' >&2"]
    with pytest.raises(pw.OutputTruncated, match="stdout exceeded max_output") as raised:
        lib.run(argv, max_output=4)
    for result in (raised.value.result, lib.run(argv, max_output=4, on_overflow="truncate")):
        assert result.stdout == b"abc\xff"
        assert result.stderr == b"\x00"
        assert result.truncated == {"stdout": True, "stderr": False}
    assert lib.run(argv, max_output=7).stdout == b"abc\xffdef"


def test_streamed_run_past_max_output_raises_too(lib: pw.Client) -> None:
    data = b"x" * (3 << 20)  # too large for one message: streamed through start
    with pytest.raises(pw.OutputTruncated) as raised:
        lib.run(["cat"], input=data, max_output=10)
    assert raised.value.result.stdout == b"x" * 10 and raised.value.result.ok


def test_write_to_an_exited_process_raises_process_exited(lib: pw.Client) -> None:
    process = lib.start(["true"])
    process.wait(BOUND)
    with pytest.raises(pw.ProcessExited):
        process.write(b"late\n")
    with pytest.raises(pw.ProcessExited):
        process.write(b"late\n", binary=True)


def test_run_bytes_input_larger_than_one_message(lib: pw.Client) -> None:
    data = os.urandom(1 << 20) * 3  # 3 MiB: does not fit in one run request, streamed instead
    result = lib.run(["wc", "-c"], input=data)
    assert result.ok
    assert result.stdout.strip() == str(len(data)).encode()
    assert all(info.proc != result.proc for info in lib.list())  # forgotten, as run does
    with pytest.raises(pw.InvalidParams):
        lib.run(["cat"], input=data, stdin="null")


def test_run_timeout(lib: pw.Client) -> None:
    result = lib.run(["sleep", "10"], timeout=0.3)
    assert result.timed_out
    assert result.signal == "SIGTERM"
    assert (result.exit_code, result.returncode) == (128 + 15, -15)


# -- start, write, iterate, wait -------------------------------------------------------------


def test_start_write_iterate_wait(lib: pw.Client) -> None:
    process = lib.start(["cat"], name="echoer")
    assert process.pid and process.pgid == process.pid
    assert process.write("héllo\n") == 7
    assert process.write(b"\x00\xffraw") == 5
    process.close_stdin()
    chunks = list(process.iter_output(BOUND))
    assert {stream for stream, _ in chunks} == {"stdout"}
    assert b"".join(data for _, data in chunks) == "héllo\n".encode() + b"\x00\xffraw"
    status = process.wait(BOUND)
    assert status.code == 0 and status.ok
    assert process.exit_status == status
    assert process.offsets["stdout"] == 12
    assert not process.running
    assert list(process) == []  # the stream ended; iterating again yields nothing


def test_stdout_and_stderr_apart(lib: pw.Client) -> None:
    process = lib.start(["sh", "-c", "echo one; echo two >&2; echo three"])
    assert collect(process) == {"stdout": b"one\nthree\n", "stderr": b"two\n"}
    assert process.wait(BOUND).code == 0


def test_binary_output_frames(lib: pw.Client) -> None:
    process = lib.start(["sh", "-c", "printf 'o\\377'; printf 'e\\000' >&2; exit 4"], binary=True)
    assert collect(process) == {"stdout": b"o\xff", "stderr": b"e\x00"}
    assert process.wait(BOUND).code == 4
    assert process.offsets == {"stdout": 2, "stderr": 2}


def test_base64_output_encoding(lib: pw.Client) -> None:
    process = lib.start(["printf", "hi\\n"], encoding="base64")
    assert collect(process)["stdout"] == b"hi\n"


def test_large_stdin_round_trip_in_binary_mode(lib: pw.Client) -> None:
    data = os.urandom(5 * (1 << 20))  # more than the window, many chunks of max_stdin_chunk
    process = lib.start(["cat"], binary=True)
    writer = threading.Thread(target=lambda: (process.write(data), process.close_stdin()))
    writer.start()
    received = collect(process)["stdout"]
    writer.join(BOUND)
    assert received == data
    assert process.wait(BOUND).code == 0


def test_communicate(lib: pw.Client) -> None:
    process = lib.start(["sh", "-c", "cat; echo bye >&2"])
    assert process.communicate(b"in\n", timeout=BOUND) == (b"in\n", b"bye\n")
    assert process.wait(BOUND).code == 0


def test_many_processes_at_once_are_routed_apart(lib: pw.Client) -> None:
    processes = [lib.start(["sh", "-c", f"for i in 1 2 3 4 5; do echo p{n}-$i; done; exit {n}"]) for n in range(8)]
    for n, process in enumerate(processes):
        lines = collect(process)["stdout"].decode().split()
        assert lines == [f"p{n}-{i}" for i in range(1, 6)]
        assert process.wait(BOUND).code == n


def test_wait_timeout_leaves_the_process_running(lib: pw.Client) -> None:
    with lib.start(["sleep", "30"]) as process:
        with pytest.raises(pw.Timeout) as raised:
            process.wait(0.2)
        assert raised.value.code == ErrorCode.TIMEOUT
        assert isinstance(raised.value, TimeoutError)
        with pytest.raises(pw.Timeout) as raised:
            lib.wait(process.proc, timeout=0.1)  # the server's wait
        assert raised.value.code == ErrorCode.TIMEOUT
        assert process.running
    assert process.exit_status is not None and process.exit_status.signal == "SIGKILL"  # killed by __exit__


def test_iteration_timeout(lib: pw.Client) -> None:
    with lib.start(["sh", "-c", "echo first; sleep 30"]) as process:
        iterator = process.iter_output(timeout=0.5)
        assert next(iterator) == ("stdout", b"first\n")
        with pytest.raises(pw.Timeout):
            next(iterator)


# -- signals ---------------------------------------------------------------------------------


def test_signal_is_trapped(lib: pw.Client) -> None:
    process = lib.start(["sh", "-c", "trap 'echo got TERM; exit 143' TERM; echo ready; while :; do sleep 0.1; done"])
    read_until(process, b"ready\n")
    process.signal(signal.SIGTERM, group=False)
    assert read_until(process, b"got TERM\n")
    status = process.wait(BOUND)
    assert (status.code, status.signal) == (143, None)


def test_signal_by_name_and_number(lib: pw.Client) -> None:
    first = lib.start(["sleep", "30"])
    first.signal("usr1")
    assert first.wait(BOUND).signal == "SIGUSR1"
    second = lib.start(["sleep", "30"])
    second.signal(signal.SIGINT)
    status = second.wait(BOUND)
    assert (status.signal, status.exit_code, status.returncode) == ("SIGINT", 130, -2)


def test_kill_reaches_the_group(lib: pw.Client) -> None:
    process = lib.start(["sh", "-c", "sleep 30 & echo $!; wait"])
    grandchild = int(read_until(process, b"\n").strip())
    process.kill()
    status = process.wait(BOUND)
    assert (status.signal, status.exit_code) == ("SIGKILL", 137)
    assert wait_until(lambda: not pid_exists(grandchild))


def test_stop_with_grace(lib: pw.Client) -> None:
    process = lib.start(["sh", "-c", "trap '' TERM; echo ready; sleep 30"])
    read_until(process, b"ready\n")
    started = time.monotonic()
    status = process.stop(grace=0.3)
    assert status.signal == "SIGKILL"
    assert 0.2 < time.monotonic() - started < BOUND
    assert process.wait(BOUND) == status


# -- errors ------------------------------------------------------------------------------------


def test_every_protocol_error_code_has_its_exception() -> None:
    assert set(ERRORS_BY_CODE) == {int(code) for code in ErrorCode}
    for code, cls in ERRORS_BY_CODE.items():
        assert issubclass(cls, pw.ProcwireError)
        assert cls.code == code


def test_typed_errors_carry_code_message_and_data(lib: pw.Client, server: Server) -> None:
    with pytest.raises(pw.NotFound) as not_found:
        lib.start(["no-such-program"])
    assert not_found.value.code == ErrorCode.NOT_FOUND == -32001
    assert not_found.value.data == {"errno": 2, "filename": "no-such-program"}
    assert "no-such-program" in not_found.value.message

    with pytest.raises(pw.NoSuchProcess) as no_such:
        lib.signal(999_999, "TERM")
    assert no_such.value.code == -32002

    with pytest.raises(pw.PermissionDenied) as denied:
        lib.run(["/etc/passwd"])
    assert denied.value.code == -32003 and denied.value.data["errno"] == 13

    with pytest.raises(pw.InvalidParams, match="unknown signal name") as invalid:
        lib.signal(1, "SIGFOO")
    assert invalid.value.code == -32602

    with pytest.raises(pw.MethodNotFound) as unknown:
        lib.call("frobnicate")
    assert unknown.value.code == -32601

    process = lib.start(["sleep", "30"])
    with pytest.raises(pw.ProcessRunning) as running:
        process.release()
    assert running.value.code == -32008
    with pytest.raises(pw.LimitExceeded) as too_big:  # the server's MAX_STDIN_CHUNK is 64 KiB in the tests
        lib.call("write", {"proc": process.proc, "data": "x" * 70_000})
    assert too_big.value.code == -32004
    process.kill()
    process.wait(BOUND)
    with pytest.raises(pw.ProcessExited) as exited:
        process.kill()
    assert exited.value.code == -32005
    with pytest.raises(pw.ProcessExited):  # its exit arrived: refused here, not by the next call
        process.write("late")
    process.release()
    with pytest.raises(pw.NoSuchProcess):
        lib.wait(process.proc)
    assert lib.ping() > 0  # the connection carries on after every error


def test_refused_write_surfaces_on_the_process(lib: pw.Client) -> None:
    process = lib.start(["sh", "-c", "exec 0<&-; echo closed; sleep 30"])
    try:
        read_until(process, b"closed\n")
        process.write("nobody reads this\n")  # sent; the refusal comes back later
        with pytest.raises(pw.ProcessExited) as raised:
            process.flush(BOUND)
        assert raised.value.code == -32005
        assert process.stdin_error is raised.value
        process.write("and again\n")
        process.kill()
        with pytest.raises(pw.ProcessExited):
            process.wait(BOUND)  # raised by the next write, flush, close_stdin or wait
    finally:
        with contextlib.suppress(pw.ProcessExited):
            process.kill()
    assert process.wait(BOUND).signal == "SIGKILL"


def test_refused_write_notification_with_id_null(lib: pw.Client) -> None:
    process = lib.start(["true"])
    process.wait(BOUND)
    lib.notify("write", {"proc": process.proc, "data": "late"})  # answered with "id": null
    assert wait_until(lambda: process.stdin_error is not None, BOUND)
    assert isinstance(process.stdin_error, pw.ProcessExited)
    with pytest.raises(pw.ProcessExited):
        process.wait(BOUND)
    assert process.wait(BOUND).code == 0  # raised once
    lib.notify("write", {"proc": 999_999, "data": "x"})  # no process of ours: kept on the client
    assert wait_until(lambda: bool(lib.stray_errors), BOUND)
    assert isinstance(lib.stray_errors[-1], pw.NoSuchProcess)


# -- list, find, release ---------------------------------------------------------------------


def test_list_find_release(lib: pw.Client) -> None:
    with lib.start(["sleep", "30"], name="lister") as sleeper:
        done = lib.start(["true"])
        done.wait(BOUND)
        infos = {info.proc: info for info in lib.list()}
        assert infos[sleeper.proc].state == "running" and infos[sleeper.proc].name == "lister"
        assert infos[sleeper.proc].argv == ["sleep", "30"] and infos[sleeper.proc].exit is None
        assert infos[done.proc].state == "exited" and infos[done.proc].exit.code == 0
        assert lib.find(sleeper.pid).proc == sleeper.proc
        done.release()
        assert done.proc not in {info.proc for info in lib.list()}


def test_another_connection_of_the_token_controls_the_process(lib: pw.Client, server: Server) -> None:
    process = lib.start(["sleep", "30"])
    with pw.Client(server.url, server.token) as other:
        assert process.proc in {info.proc for info in other.list()}
        status = other.stop(process.proc, "INT", grace=1)
    assert status.signal == "SIGINT"
    assert process.wait(BOUND) == status


# -- connection loss ---------------------------------------------------------------------------


def test_operator_disconnect_raises_connection_errors(server: Server) -> None:
    connected = pw.Client(server.url, server.token)
    try:
        process = connected.start(["sleep", "30"])
        request = urllib.request.Request(
            f"{server.http}/api/clients/{connected.client_id}",
            method="DELETE",
            headers={"Authorization": f"Bearer {server.token}"},
        )
        with urllib.request.urlopen(request, timeout=BOUND) as answer:
            assert json.load(answer) == {"closed": connected.client_id}
        with pytest.raises(pw.ProcwireConnectionError) as raised:
            process.wait(BOUND)
        assert raised.value.close_code == 4000
        assert "disconnected by an operator" in str(raised.value)
        with pytest.raises(pw.ProcwireConnectionError):
            list(process)
        with pytest.raises(pw.ProcwireConnectionError):
            connected.ping()
        assert connected.closed
        assert wait_until(lambda: not pid_exists(process.pid))
    finally:
        connected.close()


def test_close_stops_the_processes(server: Server) -> None:
    with pw.Client(server.url, server.token) as connected:
        pid = connected.start(["sleep", "30"]).pid
    assert wait_until(lambda: not pid_exists(pid))


def test_close_fails_pending_waits(server: Server) -> None:
    connected = pw.Client(server.url, server.token)
    process = connected.start(["sleep", "30"])
    failures: list[BaseException] = []

    def waiter() -> None:
        try:
            process.wait(BOUND)
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.1)
    connected.close()
    thread.join(BOUND)
    assert not thread.is_alive()
    assert len(failures) == 1 and isinstance(failures[0], pw.ProcwireConnectionError)


def test_other_server_settings_are_followed() -> None:
    """A small MAX_STDIN_CHUNK and STDIN_BUFFER_BYTES: writes are split and paced, never refused."""
    own = Server(env={"PROCWIRE_MAX_STDIN_CHUNK": "1000", "PROCWIRE_STDIN_BUFFER_BYTES": "8192"}).start()
    try:
        with pw.Client(own.url, own.token) as connected:
            assert connected.write_chunk == 1000
            connected.write_window = 8192  # what the server was given (hello does not report it)
            data = os.urandom(300_000)
            process = connected.start(["sh", "-c", "sleep 0.3; cat"], binary=True)
            writer = threading.Thread(target=lambda: (process.write(data), process.close_stdin()))
            writer.start()
            assert collect(process)["stdout"] == data
            writer.join(BOUND)
            assert process.wait(BOUND).code == 0
            assert process.stdin_error is None
    finally:
        own.stop()


# -- pty and sessions --------------------------------------------------------------------------


def test_pty_size_resize_and_input(lib: pw.Client) -> None:
    process = lib.start(["sh", "-c", 'stty size; read line; echo "got $line"; stty size; echo err >&2'], pty=(30, 100))
    assert b"30 100" in read_until(process, b"30 100")
    process.resize(40, 120)
    process.write("abc\r")
    rest = collect(process)
    assert rest["stderr"] == b""  # a terminal merges stderr into its one stream
    assert b"got abc" in rest["stdout"] and b"40 120" in rest["stdout"] and b"err" in rest["stdout"]
    assert process.wait(BOUND).code == 0


def test_pty_close_stdin_is_end_of_file(lib: pw.Client) -> None:
    process = lib.start(["cat"], pty=True)
    process.write("typed\r")
    read_until(process, b"typed")
    process.close_stdin()
    assert process.wait(BOUND).code == 0


def test_kept_process_replays_to_a_new_connection(server: Server) -> None:
    with pw.Client(server.url, server.token) as first:
        kept = first.start(["sh", "-c", "echo one; read x; echo two; sleep 30"], on_disconnect="keep", name="kept")
        read_until(kept, b"one\n")
    assert pid_exists(kept.pid)
    with pw.Client(server.url, server.token) as second:
        try:
            attached = second.attach(kept.proc)
            assert attached.attachment is not None
            assert attached.attachment.state == "running" and not attached.attachment.truncated
            assert read_until(attached, b"one\n") == b"one\n"  # the replay
            attached.write("go\n")
            assert read_until(attached, b"two\n") == b"two\n"  # live
            assert attached.offsets["stdout"] == 8
            attached.detach()
            assert list(attached) == []  # detached: the stream ends, the process runs on
            assert kept.proc in {info.proc for info in second.list() if info.state == "running"}
            again = second.attach(kept.proc, offset={"stdout": 4, "stderr": 0})
            assert read_until(again, b"two\n") == b"two\n"  # replay from the offset
            again.kill()
            assert again.wait(BOUND).signal == "SIGKILL"
        finally:
            kill_if_running(second, kept.proc)
    assert wait_until(lambda: not pid_exists(kept.pid))


def test_attach_to_an_exited_kept_process(server: Server) -> None:
    with pw.Client(server.url, server.token) as first:
        kept = first.start(["sh", "-c", "echo bye; exit 6"], on_disconnect="keep", binary=True)
        assert kept.wait(BOUND).code == 6
    with pw.Client(server.url, server.token) as second:
        attached = second.attach(kept.proc)
        assert attached.attachment is not None and attached.attachment.state == "exited"
        assert attached.attachment.exit is not None and attached.attachment.exit.code == 6
        assert collect(attached)["stdout"] == b"bye\n"
        assert attached.wait(BOUND).code == 6
        attached.release()
