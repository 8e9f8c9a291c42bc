"""``procwire serve``, websocketd's command line, run for real: the installed ``procwire`` script
as a subprocess on free loopback ports, driven by a real WebSocket client (websocket-client)."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import websocket

from tests.server import free_port, pid_exists, stop_master, wait_until

PROCWIRE = Path(sys.executable).parent / "procwire"
TOKEN = "serve-test-token"
START_TIMEOUT = 20.0
RECEIVE_TIMEOUT = 10.0

GREET = """#!/bin/sh
echo "hello $1"
read -r line
echo "got $line"
"""
ENV_DUMP = """#!/bin/sh
echo "var=${SERVE_TEST_VAR-unset} secret=${SERVE_SECRET-unset} cwd=$(pwd)"
"""
# Ignores INT and TERM, noting when each came: only the stop sequence's KILL ends it.
TRAP = """#!/bin/sh
trap 'echo "INT $(date +%s.%N)" >> "$0.signals"' INT
trap 'echo "TERM $(date +%s.%N)" >> "$0.signals"' TERM
echo "ready $$"
while :; do sleep 0.05; done
"""


@dataclass
class Served:
    """A ``procwire serve`` we started (its pid is gunicorn's master after the exec)."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"ws://{host}:{self.port}{path}"

    def get(self, path: str, host: str = "127.0.0.1", token: str | None = None) -> tuple[int, bytes]:
        """A plain GET of ``path`` as written (no ``..`` folded away): status and body."""
        connection = http.client.HTTPConnection(host, self.port, timeout=RECEIVE_TIMEOUT)
        try:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def stop(self) -> None:
        stop_master(self.process)


def serve(args: list[str], cwd: Path, env: dict[str, str] | None = None, hosts: tuple[str, ...] = ()) -> Served:
    """Start ``procwire serve --port=PORT ARGS...`` in ``cwd`` and wait (bounded) until it answers /healthz."""
    port = free_port()
    log = cwd / f"serve-{port}.log"
    environment = dict(os.environ)
    environment.update(
        PROCWIRE_LOG_LEVEL="warning",
        PROCWIRE_STATE_DIR=str(cwd / "state"),
        GUNICORN_CMD_ARGS="--no-control-socket",  # no socket under ~/.gunicorn
        **(env or {}),
    )
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [str(PROCWIRE), "serve", f"--port={port}", *args],
            cwd=cwd,
            env=environment,
            stderr=stderr,
            start_new_session=True,
        )
    served = Served(process, port, log)
    deadline = time.monotonic() + START_TIMEOUT
    for host in hosts or ("127.0.0.1",):
        while not _healthy(host, port):
            if process.poll() is not None or time.monotonic() > deadline:
                served.stop()
                raise RuntimeError(f"procwire serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
    return served


def _healthy(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def connect(url: str, token: str | None = None, origin: str | None = None) -> websocket.WebSocket:
    headers = [f"Authorization: Bearer {token}"] if token else []
    return websocket.create_connection(url, header=headers, origin=origin, timeout=RECEIVE_TIMEOUT)


def messages_until_close(ws: websocket.WebSocket) -> tuple[list[str | bytes], int]:
    """Every message the program sent, then the close code."""
    received: list[str | bytes] = []
    while True:
        opcode, data = ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            ws.close()
            return received, int.from_bytes(data[:2], "big")
        received.append(data.decode() if opcode == websocket.ABNF.OPCODE_TEXT else data)


def refused_status(url: str, token: str | None = None, origin: str | None = None) -> int:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(url, token, origin)
    return refused.value.status_code


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="procwire-serve-") as name:
        root = Path(name)
        programs = root / "programs"
        programs.mkdir()
        executable(root / "greet.sh", GREET)
        executable(programs / "env.sh", ENV_DUMP)
        executable(programs / "trap.sh", TRAP)
        web = root / "web"
        web.mkdir()
        (web / "index.html").write_text("<h1>the index</h1>")
        (web / "page.txt").write_text("a page")
        (web / "healthz").write_text("not procwire's healthz")
        (web / ".hidden").write_text("a dot-file")
        (root / "secret.txt").write_text("outside the static directory")
        for shadow in ("config.py", "wsgi.py", "app.py"):  # serve runs gunicorn in the checkout: never these
            (root / shadow).write_text('raise SystemExit("imported from where procwire serve was started")\n')
        yield root


@pytest.fixture(scope="module")
def with_token(workdir: Path) -> Iterator[Served]:
    """The single-program form (greet.sh world), a --dir, a --staticdir, --passenv and --closems; a token."""
    args = [
        "--dir=programs",
        "--staticdir",
        "web",
        "--passenv=PATH,SERVE_TEST_VAR",
        "--closems=200",
        "--origin=pages.example:8443",
        "./greet.sh",
        "world",
    ]
    env = {"PROCWIRE_TOKEN": TOKEN, "SERVE_TEST_VAR": "passed", "SERVE_SECRET": "kept back"}
    served = serve(args, workdir, env)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def public_binary(workdir: Path) -> Iterator[Served]:
    """``cat`` in binary mode, public, one at a time, on two loopback addresses."""
    hosts = ("127.0.0.1", "127.0.0.2")
    args = [
        "--address=127.0.0.1",
        "-address",
        "127.0.0.2",
        "--binary",
        "--public",
        "--sameorigin",
        "--maxforks=1",
        "cat",
    ]
    served = serve(args, workdir, {"PROCWIRE_TOKEN": TOKEN}, hosts)
    yield served
    served.stop()


def test_single_program_at_root_and_by_its_name(with_token: Served) -> None:
    for path in ("/", "/programs/greet.sh"):
        ws = connect(with_token.url(path), TOKEN)
        assert ws.recv() == "hello world"
        ws.send("there")
        assert messages_until_close(ws) == (["got there"], 1000)


def test_a_token_is_needed_and_never_on_the_command_line(with_token: Served) -> None:
    assert refused_status(with_token.url("/")) == 401
    assert refused_status(with_token.url("/programs/env.sh"), "wrong") == 401
    command_line = Path(f"/proc/{with_token.process.pid}/cmdline").read_bytes()
    assert b"gunicorn" in command_line
    assert TOKEN.encode() not in command_line


def test_origin_adds_sites_to_the_same_origin_check(with_token: Served) -> None:
    for origin in ("http://pages.example:8443", "https://pages.example:8443", f"http://127.0.0.1:{with_token.port}"):
        ws = connect(with_token.url("/programs/env.sh"), TOKEN, origin)
        assert messages_until_close(ws)[1] == 1000
    assert refused_status(with_token.url("/programs/env.sh"), TOKEN, "http://elsewhere.example") == 403


def test_dir_programs_see_passenv_only_and_run_where_serve_started(with_token: Served, workdir: Path) -> None:
    ws = connect(with_token.url("/programs/env.sh"), TOKEN)
    assert messages_until_close(ws) == ([f"var=passed secret=unset cwd={workdir}"], 1000)
    assert refused_status(with_token.url("/programs/secret.txt"), TOKEN) == 404


def test_closems_delays_each_signal_of_the_stop_sequence(with_token: Served, workdir: Path) -> None:
    """--closems=200: INT at 0.1 + 0.2 s after the client's close, TERM at 0.35 + 0.4 s, then KILL
    (websocketd's own defaults would send INT at 0.1 s and TERM at 0.35 s)."""
    signals = workdir / "programs" / "trap.sh.signals"
    signals.unlink(missing_ok=True)
    ws = connect(with_token.url("/programs/trap.sh"), TOKEN)
    pid = int(ws.recv().split()[1])
    closed = time.time()
    ws.close()
    assert wait_until(lambda: not pid_exists(pid), timeout=10)
    noted = [line.split() for line in signals.read_text().splitlines()]
    assert [name for name, _ in noted] == ["INT", "TERM"]
    assert float(noted[0][1]) - closed >= 0.3
    assert float(noted[1][1]) - closed >= 0.75


def test_the_ready_block_names_the_programs_and_says_where_the_console_went(with_token: Served) -> None:
    site = f"ws://127.0.0.1:{with_token.port}"

    def words() -> str:  # the block wraps its sentences
        return " ".join(with_token.log.read_text().split())

    assert wait_until(lambda: "procwire is ready" in words())
    said = words()
    assert f"Programs: {site}/ (greet.sh), {site}/programs/greet.sh, {site}/programs/NAME for each executable" in said
    assert "with the token (Authorization: Bearer, or ?token=)" in said
    assert "Its index.html takes / from the console, which is not served" in said
    assert "?code=" not in said and "Console:" not in said
    assert TOKEN in said  # the CLI's export lines stay


def test_staticdir_serves_files_without_a_token(with_token: Served) -> None:
    assert with_token.get("/") == (200, b"<h1>the index</h1>")
    assert with_token.get("/page.txt") == (200, b"a page")


def test_staticdir_never_serves_outside_it_nor_over_procwire_routes(with_token: Served) -> None:
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/.hidden"):
        status, body = with_token.get(path)
        assert status != 200
        assert b"outside" not in body and b"dot-file" not in body
    assert with_token.get("/healthz") == (200, b'{"status":"ok"}\n')
    assert with_token.get("/api/processes")[0] == 401


def test_binary_public_program_on_every_address(public_binary: Served) -> None:
    for host, path in (("127.0.0.1", "/"), ("127.0.0.2", "/programs/cat")):
        ws = connect_when_admitted(public_binary.url(path, host))
        ws.send_binary(b"\x00\xff binary\n")
        assert ws.recv() == b"\x00\xff binary\n"
        ws.close()


def test_maxforks_refuses_with_429(public_binary: Served) -> None:
    held = connect_when_admitted(public_binary.url("/"))
    try:
        assert refused_status(public_binary.url("/")) == 429
    finally:
        held.close()
    connect_when_admitted(public_binary.url("/")).close()


def connect_when_admitted(url: str, timeout: float = 10.0) -> websocket.WebSocket:
    """A connection to a program of the --maxforks=1 server, once the one before has ended (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return connect(url)
        except websocket.WebSocketBadStatusException as refused:
            if refused.status_code != 429 or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--ssl"], "--ssl is not supported by procwire serve: TLS belongs to nginx"),
        (["--devconsole", "cat"], "--devconsole is not supported by procwire serve"),
        (["--token=abc", "cat"], "a token on the command line shows in ps"),
        (["--nosuch=1", "cat"], "unknown flag --nosuch"),
        (["--port=http", "cat"], "--port=http: not a number"),
        (["--dir=/no/such/dir"], "--dir=/no/such/dir: no such directory"),
        (["./no-such-script.sh"], "./no-such-script.sh: not an executable file"),
    ],
)
def test_refused_command_lines(args: list[str], said: str, tmp_path: Path) -> None:
    done = subprocess.run([str(PROCWIRE), "serve", *args], cwd=tmp_path, capture_output=True, timeout=30)
    assert done.returncode == 2
    assert said in done.stderr.decode()
    assert done.stdout == b""


def test_help_is_websocketd_style_usage() -> None:
    done = subprocess.run([str(PROCWIRE), "serve", "--help"], capture_output=True, timeout=30)
    assert done.returncode == 0
    usage = done.stdout.decode()
    assert "procwire serve [options] COMMAND [command args]" in usage
    for flag in ("--port", "--address", "--dir", "--staticdir", "--binary", "--passenv", "--maxforks", "--closems"):
        assert flag in usage
