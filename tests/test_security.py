"""Identities, roles, policy, audit log and limits, against the real server (docs/security.md).

One server for the authorisation matrix and the policy cases, configured by a
TOML file written to a temporary directory; another for the connection and
message limits.  Every wait is bounded; every process is cleaned up.  The plain
HTTP part of the matrix, and refused handshakes, go through Flask's test client
of an app with the same TOML file (``client``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websocket
from flask import Flask
from flask.testing import FlaskClient

from app.errors import ErrorCode
from tests.client import RpcClient, RpcFailure, read_close, start_bursts
from tests.flask_app import bearer, build_app, settings_for, upgrade
from tests.server import Server, children_of, pid_exists, wait_until

ADMIN_TOKEN = "admin-token-0123456789"  # TOKEN: the admin named "default"
TOKENS = {
    "alice": ("user", "alice-token-0123456789"),
    "bob": ("user", "bob-token-0123456789"),
    "carol": ("user", "carol-token-0123456789"),
    "capped": ("user", "capped-token-0123456789"),
    "tim": ("user", "tim-token-0123456789"),
    "limited": ("user", "limited-token-0123456789"),
    "ops": ("admin", "ops-token-0123456789"),
}
WRONG_TOKEN = "wrong-token-0123456789"
ALL_TOKENS = [ADMIN_TOKEN, WRONG_TOKEN, *(token for _role, token in TOKENS.values())]
CAP = 5
CLOSE_BY_ADMIN = 4000
CLOSE_POLICY_VIOLATION = 1008

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_tables(policies: dict[str, str]) -> str:
    """``[[tokens]]`` for every name in TOKENS, with a ``policy`` table where given."""
    text = ""
    for name, (role, token) in TOKENS.items():
        text += f'\n[[tokens]]\nname = "{name}"\nrole = "{role}"\nsha256 = "{digest(token)}"\n'
        if name in policies:
            text += f"[tokens.policy]\n{policies[name]}\n"
    return text


@dataclass
class Setup:
    server: Server
    root: Path  # the users' only cwd root
    audit_log: Path
    outside: Path
    clients: dict[str, RpcClient] = field(default_factory=dict)

    @property
    def work(self) -> str:
        return str(self.root)

    def connect(self, name: str) -> RpcClient:
        return RpcClient(self.server.url, token_of(name))


def token_of(name: str) -> str:
    if name == "admin":
        return ADMIN_TOKEN
    if name == "wrong":
        return WRONG_TOKEN
    return TOKENS[name][1]


def start_server(env: dict[str, str]) -> Server:
    return Server(env=env, token=ADMIN_TOKEN).start()


def stop_server(server: Server) -> None:
    try:
        worker = server.worker_pids()[0]
        assert wait_until(lambda: children_of(worker) == [], timeout=15), children_of(worker)
    finally:
        server.stop()


def write_config(base: Path) -> tuple[Path, Path, Path, Path]:
    """The TOML file of the matrix and policy cases, under ``base``: it, the work root, a directory
    outside it, the audit log."""
    root = base / "work"
    root.mkdir()
    outside = base / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    audit_log = base / "audit.log"
    config = base / "procwire.toml"
    config.write_text(
        f'AUDIT_LOG = "{audit_log}"\n'
        "[policies.user]\n"
        'allow = ["/usr/bin/*"]\n'
        'deny = ["/usr/bin/sh", "/usr/bin/bash"]\n'
        f'cwd_roots = ["{root}"]\n'
        'env = ["LANG", "GREETING"]\n'
        + token_tables(
            {
                "alice": "pty = true\nkeep = true\ndefault_timeout = 60\nmax_timeout = 120",
                "carol": 'env = ["PATH"]',
                "capped": f"max_procs = {CAP}",
                "tim": "default_timeout = 0.5\nmax_timeout = 5",
                "limited": "rlimits = { nofile = 64, cpu = 30 }",
            }
        )
    )
    return config, root, outside, audit_log


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    config, root, outside, audit_log = write_config(tmp_path_factory.mktemp("security"))
    server = start_server({"PROCWIRE_CONFIG": str(config), "PROCWIRE_KILL_GRACE": "0.5"})
    made = Setup(server, root, audit_log, outside)
    try:
        for name in ("alice", "bob", "admin", "ops"):
            made.clients[name] = made.connect(name)
        yield made
    finally:
        for client in made.clients.values():
            with contextlib.suppress(Exception):
                client.close()
        stop_server(server)


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    """The same configuration in-process, for Flask's test client (``client``)."""
    config, *_ = write_config(tmp_path)
    return build_app(settings_for(tmp_path / "state", {"PROCWIRE_TOKEN": ADMIN_TOKEN, "PROCWIRE_CONFIG": str(config)}))


def outcome(client: RpcClient, method: str, params: dict[str, Any]) -> Any:
    """``"ok"`` or the error code of one call."""
    answer = client.response(client.request(method, params))
    return answer["error"]["code"] if "error" in answer else "ok"


def http(server: Server, method: str, path: str, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(server.http + path, method=method, headers=headers)
    try:
        with _opener.open(request, timeout=10) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode("utf-8", "replace")


def handshake_status(server: Server, token: str | None) -> int:
    url = server.url if token is None else f"{server.url}?token={token}"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, timeout=10).close()
    return refused.value.status_code


def finish(client: RpcClient, proc: int) -> None:
    """Kill ``proc`` if it still runs and read its exit (bounded by the client's timeout)."""
    with contextlib.suppress(RpcFailure):
        client.call("kill", proc=proc)
    with contextlib.suppress(RpcFailure):
        client.call("wait", proc=proc, timeout=10)


# -- the authorisation matrix ---------------------------------------------------------------------------------

OK, DENIED, GONE, TIMED_OUT = "ok", int(ErrorCode.PERMISSION_DENIED), int(ErrorCode.NO_SUCH_PROCESS), -32006
ACTORS = ["none", "wrong", "owner", "other_user", "admin", "other_admin"]
TOKEN_HOLDERS = ACTORS[2:]
ACTOR_NAMES = {"owner": "alice", "other_user": "bob", "admin": "admin", "other_admin": "ops"}
# Per method: (owner, another user, admin, another admin).  Without a token or with a wrong one,
# the handshake is refused with 401 and no method can be called (test_no_method_without_a_valid_token).
OWNED = (OK, GONE, OK, OK)
MATRIX: dict[str, tuple[Any, Any, Any, Any]] = {
    "ping": (OK, OK, OK, OK),
    "lookpath": (OK, OK, OK, OK),
    "list": (OK, OK, OK, OK),
    "start": (DENIED, DENIED, OK, OK),  # sh: denied for role user
    "run": (DENIED, DENIED, OK, OK),
    "find": OWNED,
    "write": OWNED,
    "close_stdin": OWNED,
    "signal": OWNED,
    "kill": OWNED,
    "stop": OWNED,
    "wait": (TIMED_OUT, GONE, TIMED_OUT, TIMED_OUT),  # allowed: the process is still running
    "resize": OWNED,
    "attach": OWNED,
    "detach": OWNED,
    "release": OWNED,
}


def target_for(setup: Setup, method: str) -> dict[str, Any]:
    """A process of alice's for ``method`` to act on."""
    alice = setup.clients["alice"]
    if method == "release":
        started = alice.call("start", argv=["true"], cwd=setup.work)
        alice.call("wait", proc=started["proc"], timeout=10)
        return started
    if method == "resize":
        return alice.call("start", argv=["cat"], cwd=setup.work, pty={"rows": 24, "cols": 80})
    return alice.call("start", argv=["cat"], cwd=setup.work)


def params_for(setup: Setup, method: str, target: dict[str, Any]) -> dict[str, Any]:
    proc = target["proc"]
    return {
        "ping": {},
        "lookpath": {"file": "echo"},
        "list": {},
        "start": {"argv": ["sh", "-c", "true"], "cwd": setup.work},
        "run": {"argv": ["sh", "-c", "true"], "cwd": setup.work},
        "find": {"pid": target["pid"]},
        "write": {"proc": proc, "data": "x"},
        "close_stdin": {"proc": proc},
        "signal": {"proc": proc, "signal": "CONT"},
        "kill": {"proc": proc},
        "stop": {"proc": proc, "grace": 0.5},
        "wait": {"proc": proc, "timeout": 0.2},
        "resize": {"proc": proc, "rows": 30, "cols": 100},
        "attach": {"proc": proc},
        "detach": {"proc": proc},
        "release": {"proc": proc},
    }[method]


@pytest.mark.parametrize("token", [None, WRONG_TOKEN])
def test_no_method_without_a_valid_token(client: FlaskClient, token: str | None) -> None:
    """The "none" and "wrong" actors of the matrix below: the handshake is refused before any method."""
    assert upgrade(client, "/ws" if token is None else f"/ws?token={token}").status_code == 401


@pytest.mark.parametrize("actor", TOKEN_HOLDERS)
@pytest.mark.parametrize("method", sorted(MATRIX))
def test_authorisation_matrix_for_methods(setup: Setup, method: str, actor: str) -> None:
    expected = dict(zip(TOKEN_HOLDERS, MATRIX[method], strict=True))[actor]
    target = target_for(setup, method)
    try:
        assert outcome(setup.clients[ACTOR_NAMES[actor]], method, params_for(setup, method, target)) == expected
    finally:
        finish(setup.clients["alice"], target["proc"])
        if method == "attach" and actor in ("admin", "other_admin", "owner"):
            with contextlib.suppress(RpcFailure):
                setup.clients[ACTOR_NAMES[actor]].call("detach", proc=target["proc"])


# (no token, wrong token, user, another user, admin, another admin)
REST_MATRIX = {
    "/api/clients": (401, 401, 403, 403, 200, 200),
    "/api/processes": (401, 401, 403, 403, 200, 200),
    "/healthz": (200, 200, 200, 200, 200, 200),
    "/metrics": (401, 401, 200, 200, 200, 200),  # counters only: any valid token
    "/api/whoami": (401, 401, 200, 200, 200, 200),  # who the server takes a token for: anyone's
}
DELETE_MATRIX = (401, 401, 403, 403, 200, 200)  # DELETE /api/clients/<id>, of a connection that must stay or go


def actor_token(actor: str) -> str | None:
    return None if actor == "none" else token_of(ACTOR_NAMES.get(actor, actor))


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("path", sorted(REST_MATRIX))
def test_authorisation_matrix_for_http(client: FlaskClient, path: str, actor: str) -> None:
    expected = dict(zip(ACTORS, REST_MATRIX[path], strict=True))[actor]
    response = client.get(path, headers=bearer(actor_token(actor)))
    assert response.status_code == expected, response.text


@pytest.mark.parametrize("actor", ACTORS)
def test_authorisation_matrix_for_disconnecting_a_client(setup: Setup, actor: str) -> None:
    expected = dict(zip(ACTORS, DELETE_MATRIX, strict=True))[actor]
    with setup.connect("alice") as victim:
        victim_id = victim.hello["params"]["client_id"]
        status, body = http(setup.server, "DELETE", f"/api/clients/{victim_id}", actor_token(actor))
        assert status == expected, body
        if status == 200:
            assert read_close(victim.ws)[0] == CLOSE_BY_ADMIN
        else:
            assert victim.call("ping")["time"] > 0


def test_users_see_only_their_own_processes_and_admins_see_all_with_owners(setup: Setup) -> None:
    alice, bob, admin = setup.clients["alice"], setup.clients["bob"], setup.clients["admin"]
    mine = alice.call("start", argv=["sleep", "30"], cwd=setup.work)
    bobs = bob.call("start", argv=["sleep", "30"], cwd=setup.work)
    try:
        listed = {entry["proc"]: entry["owner"] for entry in alice.call("list")["processes"]}
        assert listed.get(mine["proc"]) == "alice" and bobs["proc"] not in listed
        assert set(listed.values()) == {"alice"}
        listed = {entry["proc"]: entry["owner"] for entry in admin.call("list")["processes"]}
        assert listed[mine["proc"]] == "alice" and listed[bobs["proc"]] == "bob"
        assert admin.call("find", pid=bobs["pid"])["owner"] == "bob"
        assert bob.error_of("find", pid=mine["pid"]).code == GONE
        _status, body = http(setup.server, "GET", "/api/processes", ADMIN_TOKEN)
        owners = {entry["proc"]: entry["owner"] for entry in body["processes"]}
        assert owners[mine["proc"]] == "alice" and owners[bobs["proc"]] == "bob"
        _status, body = http(setup.server, "GET", "/api/clients", ADMIN_TOKEN)
        assert {"alice", "bob", "default", "ops"} <= {entry["owner"] for entry in body["clients"]}
        assert alice.hello["params"]["identity"] == {"name": "alice", "role": "user"}
        assert admin.hello["params"]["identity"] == {"name": "default", "role": "admin"}
    finally:
        finish(alice, mine["proc"])
        finish(bob, bobs["proc"])


def test_an_admin_stops_another_tokens_process(setup: Setup) -> None:
    alice = setup.clients["alice"]
    started = alice.call("start", argv=["sleep", "30"], cwd=setup.work)
    try:
        status = setup.clients["ops"].call("stop", proc=started["proc"], grace=1)
        assert status["signal"] == "SIGTERM"
        assert wait_until(lambda: not pid_exists(started["pid"]))
    finally:
        finish(alice, started["proc"])


# -- policy ------------------------------------------------------------------------------------------------------


def refused(setup: Setup, name: str, argv: list[str], **params: Any) -> RpcFailure:
    params.setdefault("cwd", setup.work)
    with setup.connect(name) as client:
        before = {entry["proc"] for entry in client.call("list")["processes"]}
        failure = client.error_of("start", argv=argv, **params)
        assert {entry["proc"] for entry in client.call("list")["processes"]} == before  # nothing was started
        return failure


def test_allowed_executable_runs(setup: Setup) -> None:
    with setup.connect("bob") as bob:
        done = bob.run_to_exit(["echo", "hi"], cwd=setup.work, env={"GREETING": "x"})
        assert bytes(done.stdout) == b"hi\n" and done.exit is not None and done.exit["code"] == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["sh", "-c", "echo escaped"],
        ["/bin/sh", "-c", "echo escaped"],
        ["/usr/bin/sh", "-c", "echo escaped"],
        ["dash", "-c", "echo escaped"],  # what sh links to
        ["bash", "-c", "echo escaped"],
        ["/usr/bin/../bin/sh", "-c", "echo escaped"],
        ["../../../../../../../../usr/bin/sh", "-c", "echo escaped"],
    ],
)
def test_denied_shell_by_any_name(setup: Setup, argv: list[str]) -> None:
    failure = refused(setup, "bob", argv)
    assert failure.code == DENIED
    assert failure.data == {"rule": "deny"}
    assert "is in the deny list of role user" in failure.message


def test_policy_refusal_names_the_rule(setup: Setup) -> None:
    failure = refused(setup, "bob", ["sh", "-c", "true"])
    assert failure.message == "policy: /usr/bin/sh is in the deny list of role user"


def test_symlink_to_a_denied_shell_is_denied(setup: Setup, tmp_path: Path) -> None:
    link = setup.root / f"innocent-{os.getpid()}-{time.monotonic_ns()}"
    link.symlink_to("/usr/bin/sh")
    try:
        failure = refused(setup, "bob", [f"./{link.name}", "-c", "true"])
        assert failure.code == DENIED and failure.data == {"rule": "deny"}
        assert "(real path of" in failure.message
    finally:
        link.unlink()


def test_symlink_to_an_allowed_program_outside_the_allowed_directory_is_refused(setup: Setup) -> None:
    link = setup.root / f"my-echo-{time.monotonic_ns()}"
    link.symlink_to("/usr/bin/echo")
    try:
        failure = refused(setup, "bob", [str(link), "hi"])
        assert failure.code == DENIED and failure.data == {"rule": "allow"}
        assert failure.message == f"policy: {link} is not in the allow list of role user"
    finally:
        link.unlink()


def test_program_outside_the_allow_list(setup: Setup) -> None:
    script = setup.root / f"tool-{time.monotonic_ns()}"
    script.write_text("#!/usr/bin/echo\n")
    script.chmod(0o755)
    try:
        assert refused(setup, "bob", [str(script)]).data == {"rule": "allow"}
    finally:
        script.unlink()


def fake_ls(directory: Path) -> Path:
    """An ``ls`` that would leave a marker if it ever ran."""
    directory.mkdir(exist_ok=True)
    marker = directory / "ran"
    fake = directory / "ls"
    fake.write_text(f"#!/usr/bin/touch {marker}\n")
    fake.chmod(0o755)
    return marker


def test_user_path_cannot_be_set_without_a_grant(setup: Setup, tmp_path: Path) -> None:
    marker = fake_ls(tmp_path / "fakebin")
    failure = refused(setup, "bob", ["ls"], env={"PATH": str(tmp_path / "fakebin")})
    assert failure.code == DENIED and failure.data == {"rule": "env"}
    assert "environment variable PATH" in failure.message
    assert not marker.exists()


def test_user_path_pointing_at_a_fake_program_is_refused(setup: Setup, tmp_path: Path) -> None:
    """carol may set PATH; the program it finds is still judged by its resolved path."""
    marker = fake_ls(tmp_path / "fakebin")
    failure = refused(setup, "carol", ["ls"], env={"PATH": str(tmp_path / "fakebin")})
    assert failure.code == DENIED and failure.data == {"rule": "allow"}
    assert failure.message == f"policy: {tmp_path}/fakebin/ls is not in the allow list of role user"
    assert not marker.exists()
    with setup.connect("carol") as carol:  # the real ls through a PATH carol sets: allowed
        done = carol.run_to_exit(["ls", "-d", "."], cwd=setup.work, env={"PATH": "/usr/bin"})
        assert done.exit is not None and done.exit["code"] == 0


@pytest.mark.parametrize("cwd", ["..", "/", "escape", "escape/..", "../outside", "/tmp"])
def test_cwd_escapes_are_refused(setup: Setup, cwd: str) -> None:
    path = cwd if cwd.startswith("/") else f"{setup.work}/{cwd}"
    failure = refused(setup, "bob", ["echo", "x"], cwd=path)
    assert failure.code == DENIED and failure.data == {"rule": "cwd_roots"}
    assert "is not inside the cwd_roots of role user" in failure.message


def test_no_cwd_means_the_servers_which_is_outside_the_root(setup: Setup) -> None:
    with setup.connect("bob") as bob:
        failure = bob.error_of("start", argv=["echo", "x"])
    assert failure.code == DENIED and failure.data == {"rule": "cwd_roots"}


def test_ld_preload_is_refused(setup: Setup) -> None:
    failure = refused(setup, "bob", ["echo", "x"], env={"LD_PRELOAD": "/tmp/evil.so"})
    assert failure.code == DENIED and failure.data == {"rule": "env"}
    assert failure.message == "policy: environment variable LD_PRELOAD is not in the env allow list of role user"


@pytest.mark.parametrize(
    ("params", "rule"),
    [
        ({"pty": {"rows": 24, "cols": 80}}, "pty"),
        ({"on_disconnect": "keep"}, "keep"),
        ({"clear_env": True}, "clear_env"),
    ],
)
def test_switches_users_are_not_granted(setup: Setup, params: dict[str, Any], rule: str) -> None:
    failure = refused(setup, "bob", ["cat"], **params)
    assert failure.code == DENIED and failure.data == {"rule": rule}


def test_run_is_checked_like_start(setup: Setup) -> None:
    with setup.connect("bob") as bob:
        failure = bob.error_of("run", argv=["sh", "-c", "true"], cwd=setup.work)
        assert failure.code == DENIED and failure.data == {"rule": "deny"}
        assert bob.call("run", argv=["echo", "ok"], cwd=setup.work)["stdout"] == "ok\n"


def test_default_timeout_applies_and_the_maximum_is_refused(setup: Setup) -> None:
    with setup.connect("tim") as tim:
        started = time.monotonic()
        done = tim.run_to_exit(["sleep", "10"], cwd=setup.work)
        assert done.exit is not None and done.exit["timed_out"] is True
        assert time.monotonic() - started < 8
        failure = tim.error_of("start", argv=["sleep", "1"], cwd=setup.work, timeout=6)
        assert failure.code == DENIED and failure.data == {"rule": "max_timeout"}
        assert failure.message == "policy: timeout 6 s is above the max_timeout 5 s of token tim"
        done = tim.run_to_exit(["true"], cwd=setup.work, timeout=5)
        assert done.exit is not None and done.exit["code"] == 0


def test_rlimits_reach_the_process(setup: Setup) -> None:
    with setup.connect("limited") as limited:
        done = limited.run_to_exit(["cat", "/proc/self/limits"], cwd=setup.work)
    limits = {line[:26].strip(): line[26:].split()[:2] for line in bytes(done.stdout).decode().splitlines()}
    assert limits["Max open files"] == ["64", "64"]
    assert limits["Max cpu time"] == ["30", "30"]


def test_per_token_cap_holds_under_50_concurrent_starts(setup: Setup) -> None:
    """10 connections of one token, 5 starts each, all at once: exactly CAP run."""
    connections = [setup.connect("capped") for _ in range(10)]
    try:
        answers = start_bursts(connections, {"argv": ["sleep", "30"], "cwd": setup.work})
        assert len(answers) == 50
        started = [answer["result"] for answer in answers if "result" in answer]
        errors = [answer["error"] for answer in answers if "error" in answer]
        assert len(started) == CAP, answers
        assert all(error["code"] == ErrorCode.LIMIT_EXCEEDED for error in errors)
        assert {error["data"]["rule"] for error in errors} == {"max_procs"}
        owned = [entry for entry in setup.clients["admin"].call("list")["processes"] if entry["owner"] == "capped"]
        assert len([entry for entry in owned if entry["state"] == "running"]) == CAP
    finally:
        for client in connections:
            client.close()
    assert wait_until(lambda: not any(pid_exists(entry["pid"]) for entry in started), timeout=15)
    with setup.connect("capped") as capped:  # the slots are free again
        done = capped.run_to_exit(["true"], cwd=setup.work)
        assert done.exit is not None and done.exit["code"] == 0


# -- the audit log --------------------------------------------------------------------------------------------------


def test_audit_log(setup: Setup) -> None:
    with setup.connect("bob") as bob:
        bob_id = bob.hello["params"]["client_id"]
        started = bob.call("start", argv=["sleep", "30"], cwd=setup.work, name="audited")
        bob.call("signal", proc=started["proc"], signal="CONT")
        bob.call("kill", proc=started["proc"])
        bob.collect(started["proc"])
        bob.error_of("start", argv=["sh", "-c", "true"], cwd=setup.work)
    handshake_status(setup.server, WRONG_TOKEN)

    def events() -> list[dict[str, Any]]:
        return [json.loads(line) for line in setup.audit_log.read_text(encoding="utf-8").splitlines()]

    assert wait_until(lambda: any(e["event"] == "disconnect" and e.get("client") == bob_id for e in events()))
    lines = events()
    mine = [line for line in lines if line.get("client") == bob_id or line.get("proc") == started["proc"]]
    kinds = [line["event"] for line in mine]
    assert kinds[0] == "connect" and kinds[-1] == "disconnect", kinds
    assert {"connect", "start", "signal", "exit", "refused", "disconnect"} <= set(kinds)
    start = next(line for line in mine if line["event"] == "start")
    assert start["argv"] == ["sleep", "30"] and start["cwd"] == setup.work and start["token"] == "bob"
    assert start["executable"] == "/usr/bin/sleep" and start["pid"] == started["pid"]
    signals = [line for line in mine if line["event"] == "signal"]
    assert [(line["method"], line["signal"]) for line in signals] == [("signal", "SIGCONT"), ("kill", "SIGKILL")]
    exit_line = next(line for line in mine if line["event"] == "exit")
    assert exit_line["signal"] == "SIGKILL" and exit_line["code"] is None and exit_line["duration"] >= 0
    refusal = next(line for line in mine if line["event"] == "refused")
    assert refusal["code"] == DENIED and refusal["rule"] == "deny" and refusal["method"] == "start"
    assert any(line["event"] == "refused" and line["code"] == 401 and line["rule"] == "token" for line in lines)
    for line in lines:
        assert {"time", "event", "worker"} <= set(line)
    text = setup.audit_log.read_text(encoding="utf-8")
    for token in ALL_TOKENS:
        assert token not in text


# -- connection and message limits ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("limits")
    config = base / "procwire.toml"
    config.write_text(
        "MAX_CONNECTIONS_PER_TOKEN = 2\n"
        "MAX_CONNECTIONS_PER_ADDRESS = 4\n"
        "MAX_MESSAGES_PER_SECOND = 20\n"
        "MESSAGE_BURST = 20\n"
        f'AUDIT_LOG = "{base / "audit.log"}"\n'
        "[policies.user]\n"
        'allow = ["/usr/bin/*"]\n'
        'cwd_roots = ["/"]\n'
        "max_procs_total = 2\n" + token_tables({})
    )
    server = start_server({"PROCWIRE_CONFIG": str(config)})
    try:
        yield server
    finally:
        stop_server(server)


def test_connections_per_token_and_per_address_get_429(limited: Server) -> None:
    url = limited.url
    with RpcClient(url, token_of("alice")), RpcClient(url, token_of("alice")) as second:
        assert handshake_status(limited, token_of("alice")) == 429
        assert http(limited, "GET", "/api/clients", ADMIN_TOKEN)[0] == 200  # plain HTTP holds no slot
        with RpcClient(url, token_of("bob")), RpcClient(url, token_of("admin")):
            assert handshake_status(limited, token_of("ops")) == 429  # 4 from 127.0.0.1 already
        second.close()
        # closed connections give their slots back (the server notices the close quickly)
        assert wait_until(lambda: _connects(limited, "alice"), timeout=10)


def _connects(server: Server, name: str) -> bool:
    try:
        RpcClient(server.url, token_of(name), timeout=5).close()
    except websocket.WebSocketBadStatusException:
        return False
    return True


def test_message_rate_limit_answers_32004_then_closes_with_1008(limited: Server) -> None:
    """Pings as fast as the answers come (one in flight, so the server never
    closes with unread bytes, which would reset the connection)."""
    codes: list[Any] = []
    with RpcClient(limited.url, token_of("alice")) as client:
        deadline = time.monotonic() + 15
        close_code = None
        while close_code is None and time.monotonic() < deadline and len(codes) < 1000:
            client.request("ping")
            frame = client.ws.recv_frame()
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                close_code = int.from_bytes(bytes(frame.data)[:2], "big")
                break
            message = json.loads(frame.data)
            codes.append(message["error"]["code"] if "error" in message else "ok")
    assert close_code == CLOSE_POLICY_VIOLATION, codes
    assert codes[:20] == ["ok"] * 20
    refused = codes[20:]
    assert ErrorCode.LIMIT_EXCEEDED in refused and refused.count("ok") <= 5, codes  # a few: the bucket refills
    with RpcClient(limited.url, token_of("alice")) as fresh:  # another connection is not affected
        assert fresh.call("ping")["time"] > 0


def test_the_1008_close_is_readable_by_a_client_that_keeps_sending(limited: Server) -> None:
    """A client that sends 5,000 pings before it reads anything: the server answers the first,
    refuses the next, then closes with 1008 and reads and drops the rest, so every send succeeds
    and the Close frame is there to read (closing with unread bytes reset the connection: the
    client's send failed with ECONNRESET or EPIPE)."""
    with RpcClient(limited.url, token_of("alice")) as client:
        ping = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"})
        for _ in range(5000):
            client.ws.send(ping)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            frame = client.ws.recv_frame()
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                assert int.from_bytes(bytes(frame.data)[:2], "big") == CLOSE_POLICY_VIOLATION
                break
        else:
            raise AssertionError("no Close frame in time")


def test_refused_stdin_frames_are_reported_under_the_rate_limit(limited: Server) -> None:
    with RpcClient(limited.url, token_of("bob")) as client:
        for _ in range(30):
            client.send_binary(b"\x00\x00\x00\x00\x01x")
        errors = [client.next_message()["error"] for _ in range(30)]
    assert {error["code"] for error in errors} == {ErrorCode.NO_SUCH_PROCESS, ErrorCode.LIMIT_EXCEEDED}
    assert [error["code"] for error in errors].count(ErrorCode.LIMIT_EXCEEDED) >= 5


def test_total_process_cap_of_a_role(limited: Server) -> None:
    with RpcClient(limited.url, ADMIN_TOKEN) as admin, RpcClient(limited.url, token_of("bob")) as bob:
        first = admin.call("start", argv=["sleep", "30"])
        second = admin.call("start", argv=["sleep", "30"])
        try:
            failure = bob.error_of("start", argv=["sleep", "1"], cwd="/")
            assert failure.code == ErrorCode.LIMIT_EXCEEDED and failure.data == {"rule": "max_procs_total"}
            assert "the server already runs 2 processes" in failure.message
        finally:
            for started in (first, second):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(started["pgid"], signal.SIGKILL)
                admin.collect(started["proc"])
        done = bob.run_to_exit(["true"], cwd="/")
        assert done.exit is not None and done.exit["code"] == 0


# -- a role without any policy ------------------------------------------------------------------------------------


def test_a_role_without_any_policy_is_refused_for_that_reason(tmp_path: Path) -> None:
    """Not for the first rule its empty defaults fail ("cwd ... is not inside the cwd_roots of role user")."""
    config = tmp_path / "procwire.toml"
    config.write_text(f'[[tokens]]\nname = "alice"\nrole = "user"\nsha256 = "{digest(token_of("alice"))}"\n')
    server = start_server({"PROCWIRE_CONFIG": str(config), "PROCWIRE_AUDIT_LOG": ""})
    try:
        with RpcClient(server.url, token_of("alice")) as alice:
            failure = alice.error_of("start", argv=["echo", "x"], cwd="/tmp")
        assert failure.code == DENIED and failure.data == {"rule": "policy"}
        assert failure.message == (
            "policy: role user has no policy, so nothing may be started with this token; the server's operator "
            "adds a [policies.user] table (allow, cwd_roots) to its TOML file (PROCWIRE_CONFIG): "
            "see docs/security.md#policy"
        )
        with RpcClient(server.url, ADMIN_TOKEN) as admin:  # the admin's defaults still allow everything
            assert admin.run_to_exit(["echo", "x"], cwd="/tmp").stdout == b"x\n"
    finally:
        stop_server(server)
