"""Differential tests: the same programs served by websocketd and by procwire's program endpoints.

Each program of tests/programs/ (and ``cat`` for the binary echo) runs under
the real websocketd (Debian's package, tests/websocketd.py) and under the
real procwire (gunicorn, gevent worker); one client function drives both and
the message sequences are compared.  Where procwire differs on purpose, the
test says so and asserts procwire's documented behaviour (docs in
/work/notes/programs.md, issue 14):

- a token is required (procwire's client sends ``Authorization: Bearer``),
  except on a ``public`` program;
- the URL is ``/programs/NAME`` (websocketd ``--dir``: ``/NAME``);
- an unterminated last line is sent (websocketd drops it);
- the end of the program is a Close frame whose code tells how it ended
  (websocketd closes the TCP connection without one);
- the environment: ``REMOTE_USER``/``AUTH_TYPE`` name the token,
  ``SERVER_SOFTWARE`` is procwire's, ``UNIQUE_ID`` is the connection's client
  id, ``HTTP_HOST`` is there (Go's server keeps Host out of its header map),
  ``GATEWAY_INTERFACE`` is ``CGI/1.1`` (websocketd 0.4.1 says
  ``websocketd-CGI/0.1``; its later sources say ``CGI/1.1`` too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import websocket

from tests import program_client
from tests.program_client import OPCODE_BINARY, Conversation, open_program, refused_status
from tests.server import ROOT, Server, children_of, wait_until
from tests.websocketd import Websocketd

PROGRAMS = ROOT / "tests" / "programs"
TIMEOUT = program_client.TIMEOUT
PROBE_HEADER = "X-Probe: differential"
QUERY = "a=1&b=two%20words"
BINARY_PAYLOADS = (b"\x00\x01\x02\xff\xfe", b"two\nlines\n", bytes(range(256)) * 16)
TOKEN_NAME = "default"  # the name of the token PROCWIRE_TOKEN gives (tests/server.py's token)
NORMAL_CLOSE = 1000
CLOSE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Endpoint:
    """Where a server serves a program, and the token its client sends (None: no token)."""

    url: str
    token: str | None = None


def converse(endpoint: Endpoint, send: Sequence[str | bytes] = ()) -> Conversation:
    """Connect, send every message, then read until the server ends the connection."""
    return program_client.converse(endpoint.url, endpoint.token, list(send), header=[PROBE_HEADER])


def connect(endpoint: Endpoint, query: str = "") -> websocket.WebSocket:
    return open_program(f"{endpoint.url}?{query}" if query else endpoint.url, endpoint.token, [PROBE_HEADER])


def echoes(endpoint: Endpoint, payloads: Sequence[bytes]) -> list[bytes]:
    """Each payload sent as a binary message, and the bytes that came back for it; then the client closes."""
    ws = connect(endpoint)
    try:
        answers = []
        for payload in payloads:
            ws.send_binary(payload)
            answer = b""
            while len(answer) < len(payload):
                opcode, data = ws.recv_data()
                assert opcode == OPCODE_BINARY, (opcode, data)
                answer += data
            answers.append(answer)
        ws.close(timeout=CLOSE_TIMEOUT)
        return answers
    finally:
        ws.shutdown()


def environment(endpoint: Endpoint) -> dict[str, str]:
    return dict(str(line).partition("=")[::2] for line in converse(endpoint).messages)


# -- the servers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def websocketd_dir() -> Iterator[Websocketd]:
    """``websocketd --dir=tests/programs``: each program at ``/NAME``."""
    with Websocketd([f"--dir={PROGRAMS}"]) as running:
        yield running


@pytest.fixture(scope="module")
def websocketd_binary() -> Iterator[Websocketd]:
    """``websocketd --binary cat``: the single-program form, at every path."""
    with Websocketd(["--binary", "cat"]) as running:
        yield running


@pytest.fixture(scope="module")
def websocketd_single() -> Iterator[Websocketd]:
    """``websocketd tests/programs/env-dump``: the single-program form in text mode."""
    with Websocketd([str(PROGRAMS / "env-dump")]) as running:
        yield running


@pytest.fixture(scope="module")
def procwire() -> Iterator[Server]:
    """procwire serving the same directory, ``cat`` in binary mode, and env-dump public and at ``/``."""
    programs = {
        "binecho": {"argv": ["cat"], "mode": "binary"},
        "public-env": {"argv": [str(PROGRAMS / "env-dump")], "public": True},
    }
    env = {
        "PROCWIRE_PROGRAMS_DIR": str(PROGRAMS),
        "PROCWIRE_PROGRAMS": json.dumps(programs),
        "PROCWIRE_PROGRAMS_ROOT": "public-env",
    }
    running = Server(env=env).start()
    try:
        yield running
        worker = running.worker_pids()[0]
        if not wait_until(lambda: children_of(worker) == []):
            pytest.fail(f"programs left running: {children_of(worker)}")
    finally:
        running.stop()


def on_websocketd(server: Websocketd, path: str) -> Endpoint:
    return Endpoint(server.url(path))


def on_procwire(server: Server, path: str, token: bool = True) -> Endpoint:
    """Deliberate difference: procwire requires its token (a public program does not)."""
    return Endpoint(f"ws://127.0.0.1:{server.port}{path}", server.token if token else None)


# -- text mode: the same messages -------------------------------------------------------------


def test_a_counter_with_sleeps_gives_the_same_lines(websocketd_dir: Websocketd, procwire: Server) -> None:
    theirs = converse(on_websocketd(websocketd_dir, "/counter"))
    ours = converse(on_procwire(procwire, "/programs/counter"))
    assert theirs.messages == ["1", "2", "3", "4", "5"]
    assert ours.messages == theirs.messages


def test_a_greeter_answers_each_line_the_same(websocketd_dir: Websocketd, procwire: Server) -> None:
    names = ["alice", "bob o'brien", "  spaced  ", "", "bye"]
    theirs = converse(on_websocketd(websocketd_dir, "/greeter"), names)
    ours = converse(on_procwire(procwire, "/programs/greeter"), names)
    assert theirs.messages == ["Hello, alice!", "Hello, bob o'brien!", "Hello,   spaced  !", "Hello, !", "Goodbye!"]
    assert ours.messages == theirs.messages


def test_pieces_make_one_message_and_one_write_of_lines_several(websocketd_dir: Websocketd, procwire: Server) -> None:
    """A line written in pieces is one message; three lines in one write are three; CRLF is cut like LF."""
    theirs = converse(on_websocketd(websocketd_dir, "/pieces"))
    ours = converse(on_procwire(procwire, "/programs/pieces"))
    assert theirs.messages == ["hello world", "a", "b", "c"]
    assert ours.messages == theirs.messages


def test_an_unterminated_last_line_is_sent_by_procwire_only(websocketd_dir: Websocketd, procwire: Server) -> None:
    """Deliberate difference: websocketd drops a last line without its newline; procwire sends it."""
    theirs = converse(on_websocketd(websocketd_dir, "/unterminated"))
    ours = converse(on_procwire(procwire, "/programs/unterminated"))
    assert theirs.messages == ["first"]
    assert ours.messages == ["first", "last"]


# -- how the connection ends ------------------------------------------------------------------


@pytest.mark.parametrize(("program", "lines", "code"), [("counter", 5, NORMAL_CLOSE), ("fails", 1, 4003)])
def test_the_end_of_a_program_is_a_close_frame_on_procwire_only(
    websocketd_dir: Websocketd, procwire: Server, program: str, lines: int, code: int
) -> None:
    """Deliberate difference: websocketd ends the TCP connection without a Close frame, whatever the
    exit status; procwire sends Close 1000 after exit 0, 4000 + N after exit N."""
    theirs = converse(on_websocketd(websocketd_dir, f"/{program}"))
    ours = converse(on_procwire(procwire, f"/programs/{program}"))
    assert len(theirs.messages) == lines and theirs.close_code is None
    assert ours.messages == theirs.messages
    assert ours.close_code == code


def test_the_client_closing_first_ends_stdin_then_sends_sigint(
    websocketd_dir: Websocketd, procwire: Server, tmp_path: Path
) -> None:
    """The same stop on both: the program's stdin ends first, then, as it does not exit, SIGINT comes
    (procwire sends it to the program's process group, websocketd to its pid: the same here)."""
    for name, endpoint in (
        ("websocketd", on_websocketd(websocketd_dir, "/stop-trace")),
        ("procwire", on_procwire(procwire, "/programs/stop-trace")),
    ):
        trace = tmp_path / name
        ws = connect(endpoint, str(trace))
        try:
            assert ws.recv() == "ready"
            ws.close(timeout=CLOSE_TIMEOUT)
        finally:
            ws.shutdown()
        wait_until(lambda trace=trace: trace.exists() and trace.read_text() == "EOF\nINT\n", timeout=TIMEOUT)
        assert trace.read_text() == "EOF\nINT\n", name


def test_without_its_token_procwire_refuses_what_websocketd_runs(websocketd_dir: Websocketd, procwire: Server) -> None:
    """Deliberate difference: websocketd has no authentication; procwire answers 401 before the upgrade."""
    assert converse(on_websocketd(websocketd_dir, "/counter")).messages
    assert refused_status(on_procwire(procwire, "/programs/counter", token=False).url)[0] == 401


# -- binary mode ------------------------------------------------------------------------------


def test_a_binary_echo_returns_the_same_bytes(websocketd_binary: Websocketd, procwire: Server) -> None:
    theirs = echoes(on_websocketd(websocketd_binary, "/"), BINARY_PAYLOADS)
    ours = echoes(on_procwire(procwire, "/programs/binecho"), BINARY_PAYLOADS)
    assert theirs == list(BINARY_PAYLOADS)
    assert ours == theirs


# -- the CGI environment ----------------------------------------------------------------------

# Values that differ by nature: each server's own port (in the client's Origin too), the client's
# port, a per-connection id, the handshake's random key.
PER_CONNECTION = ("SERVER_PORT", "HTTP_ORIGIN", "REMOTE_PORT", "UNIQUE_ID", "HTTP_SEC_WEBSOCKET_KEY")
# Values procwire gives differently on purpose (below: what it gives).
DELIBERATE = ("SERVER_SOFTWARE", "GATEWAY_INTERFACE", "REMOTE_USER", "AUTH_TYPE")
WEBSOCKETD_GATEWAY_INTERFACES = ("websocketd-CGI/0.1", "CGI/1.1")  # 0.4.1 (Debian), later sources


def differing(theirs: dict[str, str], ours: dict[str, str]) -> set[str]:
    return {name for name in theirs.keys() & ours.keys() if theirs[name] != ours[name]}


def assert_deliberate_values(theirs: dict[str, str], ours: dict[str, str], server: Server, user: str) -> None:
    assert theirs["SERVER_SOFTWARE"].startswith("websocketd")
    assert re.fullmatch(r"procwire/\S+", ours["SERVER_SOFTWARE"])
    assert theirs["GATEWAY_INTERFACE"] in WEBSOCKETD_GATEWAY_INTERFACES
    assert ours["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert theirs["REMOTE_USER"] == theirs["AUTH_TYPE"] == ""
    assert ours["REMOTE_USER"] == user
    assert ours["AUTH_TYPE"] == ("Bearer" if user else "")
    assert re.fullmatch(r"[0-9]+", theirs["UNIQUE_ID"])  # websocketd: the time in ns
    assert re.fullmatch(r"[0-9a-f]{16}", ours["UNIQUE_ID"])  # procwire: the connection's client id
    assert ours["SERVER_PORT"] == str(server.port)
    assert ours["HTTP_ORIGIN"] == f"http://127.0.0.1:{server.port}"
    assert theirs["REMOTE_PORT"].isdigit() and ours["REMOTE_PORT"].isdigit()
    assert "HTTP_AUTHORIZATION" not in ours and server.token not in "".join(ours.values())


def assert_same_names(theirs: dict[str, str], ours: dict[str, str]) -> None:
    """The same variables, but HTTP_HOST: Go's server keeps Host out of the headers websocketd passes on."""
    assert set(theirs) - set(ours) == set()
    assert set(ours) - set(theirs) == {"HTTP_HOST"}


def test_the_environment_of_a_directory_program(websocketd_dir: Websocketd, procwire: Server) -> None:
    path = f"/env-dump/extra/path?{QUERY}"
    theirs = environment(on_websocketd(websocketd_dir, path))
    ours = environment(on_procwire(procwire, f"/programs{path}"))
    assert_same_names(theirs, ours)
    assert theirs["QUERY_STRING"] == QUERY and theirs["PATH_INFO"] == "/extra/path"
    assert theirs["HTTP_X_PROBE"] == "differential"
    assert theirs["SERVER_NAME"] == theirs["REMOTE_ADDR"] == "127.0.0.1"
    assert theirs["REQUEST_METHOD"] == "GET" and theirs["SERVER_PROTOCOL"] == "HTTP/1.1"
    # Deliberate difference: programs are under /programs/ (websocketd --dir: at the root).
    assert theirs["SCRIPT_NAME"] == "/env-dump" and ours["SCRIPT_NAME"] == "/programs/env-dump"
    assert theirs["REQUEST_URI"] == f"/env-dump/extra/path?{QUERY}"
    assert ours["REQUEST_URI"] == f"/programs/env-dump/extra/path?{QUERY}"
    assert theirs["PATH_TRANSLATED"] == "/env-dump/extra/path"  # websocketd: the URL's path
    assert ours["PATH_TRANSLATED"] == "/programs/env-dump/extra/path"
    assert differing(theirs, ours) - set(PER_CONNECTION) - set(DELIBERATE) == {
        "SCRIPT_NAME",
        "REQUEST_URI",
        "PATH_TRANSLATED",
    }
    assert_deliberate_values(theirs, ours, procwire, TOKEN_NAME)


def test_the_environment_of_the_single_program_form(websocketd_single: Websocketd, procwire: Server) -> None:
    """websocketd COMMAND and PROGRAMS_ROOT at "/": the same variables, the same paths; a public
    program is reached without a token, so REMOTE_USER is empty as websocketd's."""
    theirs = environment(on_websocketd(websocketd_single, f"/?{QUERY}"))
    ours = environment(on_procwire(procwire, f"/?{QUERY}", token=False))
    assert_same_names(theirs, ours)
    assert theirs["SCRIPT_NAME"] == "/" and theirs["PATH_INFO"] == "/" and theirs["QUERY_STRING"] == QUERY
    assert differing(theirs, ours) - set(PER_CONNECTION) - set(DELIBERATE) == set()
    assert_deliberate_values(theirs, ours, procwire, "")
