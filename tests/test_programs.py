"""Program endpoints (issue 14) against the real server: websocketd's model with procwire's security.

One server with a TOML configuration of small programs (``sh -c``): framing,
stdin lines, close codes, the stop sequence on the process group, the
environment, query arguments, who may connect, limits, and the program as a
process in ``list`` and ``/api/processes``.  Then the same through the real
nginx with deploy/nginx.conf.  Refusals that need no program running go through
Flask's test client of an app with the same configuration (``client``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket
from flask import Flask
from flask.testing import FlaskClient

from tests.client import RpcClient
from tests.flask_app import ADMIN_TOKEN, bearer, build_app, settings_for, upgrade
from tests.nginx import Nginx, render_nginx_conf
from tests.program_client import converse, http_json, open_program, read_until_close, refused_status
from tests.server import Server, pid_exists, wait_until

USER_TOKEN = "user-token-for-programs"
OTHER_TOKEN = "other-token-for-programs"

PROGRAMS = {
    "pieces": ["sh", "-c", "printf 'par'; sleep 0.1; printf 'tial\\nA\\nB\\n'; sleep 0.05; printf 'C\\r\\nend'"],
    "greeter": ["sh", "-c", 'while read -r line; do echo "hello $line"; done; echo bye'],
    "exit7": ["sh", "-c", "echo going; exit 7"],
    "signaled": ["sh", "-c", "echo going; kill -TERM $$; sleep 5"],
    "missing": ["/no/such/program"],
    "bytes": ["sh", "-c", "printf 'ok\\n\\377\\376\\nafter\\n'"],
    "long": ["sh", "-c", "head -c 3000 /dev/zero | tr '\\0' x; echo; echo short"],
    "env": ["env"],
    "greet": ["sh", "-c", "echo hello {name}; exit 0"],
    "cat": ["cat"],
    "tagged": ["sh", "-c", "echo out; echo err >&2; echo out2"],
    "logged": ["sh", "-c", "echo out; echo to-the-log >&2"],
    "sleeper": ["sleep", "30"],
}


def toml_config(path: Path, trap_script: Path) -> Path:
    tables = [f"[programs.{name}]\nargv = {json.dumps(argv)}\n" for name, argv in PROGRAMS.items()]
    tables += [
        '[programs.greet.args.name]\npattern = "[a-z]{1,10}"\ndefault = "world"\n',
        '[programs.env.env]\nFROM_TABLE = "yes"\n',
        '[programs.binary]\nargv = ["cat"]\nmode = "binary"\n',
        '[programs.stream]\nargv = ["head", "-c", "3000000", "/dev/urandom"]\nmode = "binary"\n',
        '[programs.tagged2]\nargv = ["sh", "-c", "echo out; echo err >&2"]\nstderr = "tagged"\n',
        '[programs.public]\nargv = ["sh", "-c", "echo \\"user=$REMOTE_USER\\""]\npublic = true\n',
        '[programs.for_users]\nargv = ["echo", "hi"]\nroles = ["user"]\n',
        '[programs.for_other]\nargv = ["echo", "hi"]\ntokens = ["other"]\n',
        '[programs.one]\nargv = ["sleep", "30"]\nmax_connections = 1\n',
        f'[programs.trap]\nargv = ["sh", {json.dumps(str(trap_script))}]\n',
    ]
    tokens = [
        f'[[tokens]]\nname = "{name}"\nrole = "user"\nsha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
        for name, token in (("user", USER_TOKEN), ("other", OTHER_TOKEN))
    ]
    tables = [table.replace("[programs.tagged]\n", '[programs.tagged]\nstderr = "merge"\n') for table in tables]
    config = path / "procwire.toml"
    config.write_text("\n".join([*tables, *tokens]))
    return config


TRAP = """
trap 'echo "INT $(date +%s.%N)" >> {log}' INT
trap 'echo "TERM $(date +%s.%N)" >> {log}' TERM
sleep 1000 &
echo "grandchild $!" >> {log}
echo ready
while :; do sleep 0.01; done
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("programs")
    trap = directory / "trap.sh"
    trap.write_text(TRAP.format(log=directory / "trap.log"))
    audit = directory / "audit.log"
    env = {
        "PROCWIRE_CONFIG": str(toml_config(directory, trap)),
        "PROCWIRE_AUDIT_LOG": str(audit),
        "PROCWIRE_MAX_MESSAGE_BYTES": "1024",
        "SECRET_OF_THE_SERVER": "not-for-programs",
    }
    log = (directory / "server.log").open("w")  # the programs' logged stderr, at LOG_LEVEL info
    running = Server(env={**env, "PROCWIRE_LOG_LEVEL": "info"}, stderr=log).start()
    running.directory = directory  # type: ignore[attr-defined]
    try:
        yield running
    finally:
        running.stop()
        log.close()


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    """The same programs in-process, for Flask's test client (``client``): refusals before the upgrade."""
    return build_app(
        settings_for(tmp_path / "state", {"PROCWIRE_CONFIG": str(toml_config(tmp_path, tmp_path / "trap.sh"))})
    )


def url(server: Server, name: str, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/programs/{name}{query}"


def audit_lines(server: Server) -> list[dict[str, object]]:
    path = server.directory / "audit.log"  # type: ignore[attr-defined]
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- framing and the end ------------------------------------------------------------------------------


def test_a_line_in_pieces_is_one_message_lines_in_one_write_are_several(server: Server) -> None:
    conversation = converse(url(server, "pieces"), server.token)
    assert conversation.messages == ["partial", "A", "B", "C", "end"]  # "end" has no newline: kept
    assert (conversation.close_code, conversation.close_reason) == (1000, "exit status 0")


def test_each_message_is_a_line_of_stdin(server: Server) -> None:
    ws = open_program(url(server, "greeter"), server.token)
    try:
        ws.send("bob")
        assert ws.recv() == "hello bob"
        ws.send("ann lee")
        ws.send("é")
        assert [ws.recv(), ws.recv()] == ["hello ann lee", "hello é"]
    finally:
        ws.close()


@pytest.mark.parametrize(
    ("name", "code", "reason"),
    [("exit7", 4007, "exit status 7"), ("signaled", 4315, "killed by SIGTERM")],
)
def test_the_close_code_tells_how_the_program_ended(server: Server, name: str, code: int, reason: str) -> None:
    conversation = converse(url(server, name), server.token)
    assert conversation.messages == ["going"]
    assert (conversation.close_code, conversation.close_reason) == (code, reason)


def test_a_program_that_cannot_start_closes_with_1011_and_the_reason(server: Server) -> None:
    conversation = converse(url(server, "missing"), server.token)
    assert conversation.messages == []
    assert conversation.close_code == 1011
    assert conversation.close_reason == "cannot start: executable not found: /no/such/program"
    assert wait_until(lambda: any(line["event"] == "start_failed" for line in audit_lines(server)))


def test_a_line_that_is_not_utf8_is_a_binary_message_with_its_bytes(server: Server) -> None:
    assert converse(url(server, "bytes"), server.token).messages == ["ok", b"\xff\xfe", "after"]


def test_a_line_over_the_message_limit_is_split_never_dropped(server: Server) -> None:
    messages = converse(url(server, "long"), server.token).messages
    assert messages == ["x" * 1024, "x" * 1024, "x" * 952, "short"]


def test_binary_mode_passes_bytes_both_ways(server: Server) -> None:
    data = bytes(range(256)) * 64
    ws = open_program(url(server, "binary"), server.token)
    try:
        for start in range(0, len(data), 1000):  # messages within this server's MAX_MESSAGE_BYTES
            ws.send_binary(data[start : start + 1000])
        received = b""
        while len(received) < len(data):
            opcode, chunk = ws.recv_data()
            assert opcode == websocket.ABNF.OPCODE_BINARY
            received += chunk
        assert received == data
    finally:
        ws.close()


def test_binary_stream_arrives_whole_then_the_close(server: Server) -> None:
    conversation = converse(url(server, "stream"), server.token)
    assert all(isinstance(message, bytes) for message in conversation.messages)
    assert sum(len(message) for message in conversation.messages) == 3_000_000
    assert conversation.close_code == 1000


def test_stderr_merged_tagged_or_logged(server: Server) -> None:
    merged = converse(url(server, "tagged"), server.token).messages
    assert sorted(merged) == ["err", "out", "out2"] and merged.index("out") < merged.index("out2")
    tagged = [json.loads(message) for message in converse(url(server, "tagged2"), server.token).messages]
    assert sorted(tagged, key=str) == sorted(
        [{"stream": "stdout", "data": "out"}, {"stream": "stderr", "data": "err"}], key=str
    )
    assert converse(url(server, "logged"), server.token).messages == ["out"]  # stderr went to the server log:
    server_log = server.directory / "server.log"  # type: ignore[attr-defined]
    assert wait_until(lambda: "program logged stderr: to-the-log" in server_log.read_text())


# -- the client goes first -----------------------------------------------------------------------------


def test_client_close_runs_the_stop_sequence_on_the_whole_group(server: Server) -> None:
    log = server.directory / "trap.log"  # type: ignore[attr-defined]
    log.unlink(missing_ok=True)
    ws = open_program(url(server, "trap"), server.token)
    assert ws.recv() == "ready"
    grandchild = int(log.read_text().split()[1])
    closed_at = time.time()
    ws.close()
    started = [line for line in audit_lines(server) if line["event"] == "start" and line.get("program") == "trap"]
    assert started and started[-1]["method"] == "program"
    proc = started[-1]["proc"]

    def exit_line() -> list[dict[str, object]]:
        return [line for line in audit_lines(server) if line["event"] == "exit" and line["proc"] == proc]

    # The leader's exit, not the grandchild's: TERM ends the grandchild at once, while the
    # leader may still be writing its TERM line.
    assert wait_until(lambda: bool(exit_line()), 10)
    assert exit_line()[0]["signal"] == "SIGKILL"
    assert not pid_exists(grandchild), "the grandchild outlived the stop sequence"
    lines = log.read_text().split("\n")
    signals = {line.split()[0]: float(line.split()[1]) - closed_at for line in lines if line[:3] in ("INT", "TER")}
    assert set(signals) == {"INT", "TERM"}, lines  # trapped both, so only KILL ended it
    assert 0.05 < signals["INT"] < signals["TERM"], signals  # INT at ~0.1 s, TERM at ~0.35 s


def current(server: Server, name: str) -> list[dict[str, object]]:
    return [
        entry
        for entry in http_json(f"{server.http}/api/processes", server.token)[1]["processes"]
        if entry["name"] == name
    ]


# -- what the program sees -------------------------------------------------------------------------------


def environment_of(server: Server, query: str, **options: object) -> dict[str, str]:
    messages = converse(url(server, "env/more/path", query), **options).messages  # type: ignore[arg-type]
    return dict(str(line).split("=", 1) for line in messages)


def test_the_cgi_environment_and_never_the_token(server: Server) -> None:
    env = environment_of(
        server, f"?a=1&token={server.token}&b=two", token=server.token, header=["X-Custom: yes", "Cookie: c=1"]
    )
    assert env["QUERY_STRING"] == "a=1&b=two" and env["REQUEST_URI"] == "/programs/env/more/path?a=1&b=two"
    assert (env["SCRIPT_NAME"], env["PATH_INFO"], env["REQUEST_METHOD"]) == ("/programs/env", "/more/path", "GET")
    assert (env["REMOTE_ADDR"], env["REMOTE_USER"], env["AUTH_TYPE"]) == ("127.0.0.1", "default", "Bearer")
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", str(server.port))
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1" and env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_SOFTWARE"].startswith("procwire/") and len(env["UNIQUE_ID"]) == 16
    assert int(env["REMOTE_PORT"]) > 0 and env["HTTP_X_CUSTOM"] == "yes" and env["HTTP_COOKIE"] == "c=1"
    assert env["FROM_TABLE"] == "yes" and env["PATH"] == os.environ["PATH"]
    assert "SECRET_OF_THE_SERVER" not in env and "HOME" not in env and "HTTP_AUTHORIZATION" not in env
    assert not any(server.token in value for value in env.values())


def test_query_arguments_fill_the_argv_only_when_they_match(server: Server) -> None:
    assert converse(url(server, "greet", "?name=bob"), server.token).messages == ["hello bob"]
    assert converse(url(server, "greet"), server.token).messages == ["hello world"]  # the default
    started = len(current(server, "greet"))
    for bad in ("?name=Bob", "?name=a%20b", "?name=$(id)", "?name=bob;id"):
        status, error = refused_status(url(server, "greet", bad), server.token)
        assert status == 400 and "argument 'name' does not match" in error
    assert len(current(server, "greet")) == started  # a refused client never starts the program


# -- who may connect ----------------------------------------------------------------------------------------


def test_a_token_is_needed_unless_the_program_is_public(server: Server) -> None:
    assert refused_status(url(server, "cat")) == (401, "missing or wrong token")
    assert refused_status(url(server, "cat"), "wrong") == (401, "missing or wrong token")
    assert converse(url(server, "public")).messages == ["user="]
    assert converse(url(server, "public"), USER_TOKEN).messages == ["user=user"]
    refused = [line for line in audit_lines(server) if line["event"] == "refused" and line["path"] == "/programs/cat"]
    assert refused and all("token" not in str(line.get("path")) for line in refused)


def test_roles_and_tokens_say_who_may_connect(server: Server) -> None:
    status, error = refused_status(url(server, "cat"), USER_TOKEN)  # default: admins only
    assert status == 403 and "may not connect to program cat" in error
    assert converse(url(server, "for_users"), USER_TOKEN).messages == ["hi"]
    assert refused_status(url(server, "for_other"), USER_TOKEN)[0] == 403
    assert converse(url(server, "for_other"), OTHER_TOKEN).messages == ["hi"]


def test_unknown_programs_and_plain_gets_are_refused_before_anything_starts(client: FlaskClient) -> None:
    refused = upgrade(client, "/programs/nope", ADMIN_TOKEN)
    assert (refused.status_code, refused.json["error"]) == (404, "no such program: nope")
    response = client.get("/programs/cat", headers=bearer(ADMIN_TOKEN))
    assert response.status_code == 400 and "WebSocket upgrade" in response.json["error"]


def test_an_origin_from_elsewhere_is_refused(client: FlaskClient) -> None:
    refused = upgrade(client, "/programs/cat", ADMIN_TOKEN, Origin="https://evil.example")
    assert refused.status_code == 403 and "origin not allowed" in refused.json["error"]


def test_max_connections_refuses_with_429_and_frees_on_close(server: Server) -> None:
    first = open_program(url(server, "one"), server.token)
    try:
        status, error = refused_status(url(server, "one"), server.token)
        assert status == 429 and "max_connections" in error
    finally:
        first.close()
    assert wait_until(lambda: _connects(server, "one"), 10)


def _connects(server: Server, name: str) -> bool:
    try:
        open_program(url(server, name), server.token).close()
    except websocket.WebSocketBadStatusException:
        return False
    return True


# -- a process like any other -----------------------------------------------------------------------------


def test_the_program_is_listed_and_an_admin_can_kill_it(server: Server) -> None:
    ws = open_program(url(server, "sleeper"), server.token)
    try:
        assert wait_until(lambda: any(entry["state"] == "running" for entry in current(server, "sleeper")))
        entry = next(entry for entry in current(server, "sleeper") if entry["state"] == "running")
        assert entry["owner"] == "default" and entry["argv"] == ["sleep", "30"]
        with RpcClient(server.url, server.token) as admin:
            listed = {item["proc"]: item for item in admin.call("list")["processes"]}
            assert listed[entry["proc"]]["name"] == "sleeper"
            admin.call("kill", proc=entry["proc"])
        conversation = read_until_close(ws)
        assert (conversation.close_code, conversation.close_reason) == (4309, "killed by SIGKILL")
    finally:
        ws.close()


def test_metrics_count_each_program(server: Server) -> None:
    converse(url(server, "exit7"), server.token)
    request = urllib.request.Request(f"{server.http}/metrics", headers={"Authorization": f"Bearer {server.token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    assert 'procwire_program_connections_total{program="exit7"}' in text
    assert 'procwire_program_exits_total{program="exit7",reason="exited"}' in text


# -- behind nginx -----------------------------------------------------------------------------------------------


def test_through_nginx_the_program_sees_the_real_client(tmp_path: Path) -> None:
    config = tmp_path / "procwire.toml"
    config.write_text(
        '[programs.env]\nargv = ["env"]\n[programs.greeter]\nargv = ["sh", "-c", "read -r x; echo hi $x"]\n'
    )
    server = Server(env={"PROCWIRE_CONFIG": str(config), "PROCWIRE_PROXY_COUNT": "1"}).start()
    nginx = Nginx(tmp_path)
    try:
        nginx.start(render_nginx_conf(tmp_path, listen=f"127.0.0.1:{nginx.port}", upstream=f"127.0.0.1:{server.port}"))
        base = f"ws://127.0.0.1:{nginx.port}/programs"
        assert converse(f"{base}/greeter", server.token, send=["you"]).messages == ["hi you"]
        env = dict(
            str(line).split("=", 1)
            for line in converse(f"{base}/env", server.token, header=["X-Forwarded-For: 6.6.6.6"]).messages
        )
        assert env["REMOTE_ADDR"] == "127.0.0.1"  # what nginx saw, never the forged header's
        assert env["SERVER_PORT"] == str(nginx.port)
        assert refused_status(f"{base}/nope", server.token)[0] == 404
    finally:
        nginx.stop()
        server.stop()
