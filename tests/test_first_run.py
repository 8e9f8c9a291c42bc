"""The first ten minutes: what ``make run`` prints in a clean HOME, and that it works.

Each test runs the real ``make run`` (tests/make_run.py) on a terminal, with
HOME in a temporary directory, and follows the printed block as a newcomer
would: the console link in a browser's place (GET the page, POST the code),
the two ``export`` lines with the real CLI, a restart.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import websocket

from config.token import sha256_hex
from tests.client import RpcClient
from tests.make_run import MakeRun
from tests.server import ROOT

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post_code(run: MakeRun, code: str, origin: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"} | ({"Origin": origin} if origin else {})
    body = json.dumps({"code": code}).encode()
    request = urllib.request.Request(f"{run.http}/console/redeem", data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def cli(run: MakeRun, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI with nothing but the block's two export lines."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROCWIRE_")}
    env.update(run.exports())
    return subprocess.run(
        [sys.executable, "-m", "procwire_client", *args], env=env, capture_output=True, text=True, timeout=30, cwd=ROOT
    )


def state_dir(home: Path) -> Path:
    return home / ".local" / "state" / "procwire"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tokens_toml(path: Path, **roles: str) -> tuple[Path, dict[str, str]]:
    """A TOML file with one ``[[tokens]]`` entry per name (its role); the tokens by name."""
    tokens = {name: f"{name}-token-0123456789" for name in roles}
    path.write_text(
        "".join(
            f'[[tokens]]\nname = "{name}"\nrole = "{role}"\nsha256 = "{sha256_hex(tokens[name])}"\n'
            for name, role in roles.items()
        )
    )
    return path, tokens


def test_a_first_make_run_prints_a_login_link_and_export_lines_that_work(tmp_path: Path) -> None:
    with MakeRun(tmp_path) as run:
        block = run.read_block()
        assert run.read_for(1.0) == "", "the block must be the last thing printed"
        code = run.login_code()
        token = run.exports()["PROCWIRE_TOKEN"]
        assert run.exports()["PROCWIRE_URL"] == f"ws://127.0.0.1:{run.port}/ws"
        assert token not in run.output.replace(f"export PROCWIRE_TOKEN={token}", "")  # nowhere else, URL included
        with _opener.open(f"{run.http}/?code={code}", timeout=10) as page:  # the link opens the console page
            assert page.status == 200 and b"<html" in page.read().lower()
        assert post_code(run, code) == (200, {"token": token})
        status, answer = post_code(run, code)
        assert status == 403 and "already used" in answer["error"]
        done = cli(run, "run", "--", "echo", "hi from the CLI")
        assert (done.returncode, done.stdout) == (0, "hi from the CLI\n"), done.stderr
        # The token is kept for the next start, readable by this user only.
        token_file = state_dir(tmp_path) / f"token-127.0.0.1_{run.port}"
        assert token_file.read_text().strip() == token
        assert (mode(token_file), mode(token_file.parent)) == (0o600, 0o700)
        shown = f"~/.local/state/procwire/{token_file.name}"
        assert f"Token: a new development admin token, kept in {shown}" in " ".join(block.split())
        # The audit log went to its own file, said at start-up; the terminal shows none of it.
        audit_log = state_dir(tmp_path) / f"audit-127.0.0.1_{run.port}.log"
        assert f"Audit log: ~/.local/state/procwire/{audit_log.name}" in " ".join(block.split())
        assert mode(audit_log) == 0o600
        events = [json.loads(line)["event"] for line in audit_log.read_text().splitlines()]
        assert {"login", "refused", "connect", "start", "exit", "disconnect"} <= set(events)
        assert '"event":' not in run.output


def test_the_token_is_the_same_after_a_restart_and_new_on_request(tmp_path: Path) -> None:
    with MakeRun(tmp_path) as first:
        first.read_block()
        token, old_code = first.exports()["PROCWIRE_TOKEN"], first.login_code()
    with MakeRun(tmp_path, port=first.port) as again:
        block = again.read_block()
        assert again.exports()["PROCWIRE_TOKEN"] == token
        assert "the same at every start (a new one: make run NEW_TOKEN=1)" in " ".join(block.split())
        assert post_code(again, old_code)[0] == 403  # no code outlives its run
        assert post_code(again, again.login_code()) == (200, {"token": token})
    with MakeRun(tmp_path, port=first.port, make_args=["NEW_TOKEN=1"]) as renewed:
        renewed.read_block()
        new_token = renewed.exports()["PROCWIRE_TOKEN"]
        assert new_token != token and f"New development token for 127.0.0.1:{first.port}" in renewed.output
        assert cli(renewed, "run", "--", "true").returncode == 0
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            RpcClient(f"ws://127.0.0.1:{renewed.port}/ws", token)
        assert refused.value.status_code == 401


def test_a_set_token_is_printed_and_stored_nowhere_and_audit_stays_on_a_pipe(tmp_path: Path) -> None:
    """Not a terminal (a pipe, a file, the journal's stream): the audit log stays where production has it."""
    with (
        (tmp_path / "out").open("wb") as out,
        MakeRun(tmp_path, env={"PROCWIRE_TOKEN": "my own token"}, terminal=False, output_file=out) as run,
    ):
        block = run.read_block()
        assert "export PROCWIRE_TOKEN='my own token'" in block and "TOKEN, as configured" in block
        assert post_code(run, run.login_code()) == (200, {"token": "my own token"})
        assert cli(run, "run", "--", "true").returncode == 0
        assert not list(state_dir(tmp_path).glob("token-*")) and not list(state_dir(tmp_path).glob("audit-*"))
        assert "Audit log" not in block
        assert '"event":"connect"' in run.read_for(1.0) + run.output


def test_with_only_configured_tokens_start_up_says_how_to_get_in(tmp_path: Path) -> None:
    config, _tokens = tokens_toml(tmp_path / "procwire.toml", ops="admin", alice="user")
    with MakeRun(tmp_path, env={"PROCWIRE_CONFIG": str(config)}) as run:
        block = " ".join(run.read_block().split())
        assert "Log in with a configured token: ops (admin), alice (user)." in block
        assert f"procwire-token NAME --role admin`, add the lines it prints to {config}, restart." in block
        assert "?code=" not in block and "PROCWIRE_TOKEN=<a token>" in block
        assert "Role user has no policy: alice may start nothing." in block
        assert not list(state_dir(tmp_path).glob("token-*"))


def test_adding_a_user_keeps_the_development_admin_and_the_refusal_names_the_missing_policy(tmp_path: Path) -> None:
    with MakeRun(tmp_path) as first:
        first.read_block()
        token = first.exports()["PROCWIRE_TOKEN"]
    config, tokens = tokens_toml(tmp_path / "procwire.toml", alice="user")
    with MakeRun(tmp_path, env={"PROCWIRE_CONFIG": str(config)}, port=first.port) as run:
        block = " ".join(run.read_block().split())
        assert run.exports()["PROCWIRE_TOKEN"] == token  # still the admin, still the same token
        assert "No [[tokens]] entry is an admin (alice): the development admin token is kept next to them." in block
        assert f"Add a [policies.user] table (allow, cwd_roots) to {config} (docs/security.md#policy)." in block
        assert cli(run, "run", "--", "echo", "admin").stdout == "admin\n"
        with RpcClient(f"ws://127.0.0.1:{run.port}/ws", tokens["alice"]) as alice:
            assert alice.hello["params"]["identity"] == {"name": "alice", "role": "user"}
            failure = alice.error_of("start", argv=["echo", "x"], cwd="/tmp")
        assert failure.data == {"rule": "policy"}
        assert failure.message.startswith("policy: role user has no policy, so nothing may be started")
        assert "[policies.user]" in failure.message and "docs/security.md#policy" in failure.message


def test_under_the_journal_no_secret_is_printed(tmp_path: Path) -> None:
    """systemd names its stream in JOURNAL_STREAM: the token and a login code stay out of the journal."""
    with (tmp_path / "journal").open("wb") as journal:
        info = os.fstat(journal.fileno())
        env = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        with MakeRun(tmp_path, env=env, terminal=False, output_file=journal) as run:
            block = run.read_block()
            token_file = state_dir(tmp_path) / f"token-127.0.0.1_{run.port}"
            shown = f"~/.local/state/procwire/{token_file.name}"
            assert f"in {shown} (not printed to the journal)" in " ".join(block.split())
            assert token_file.read_text().strip() not in run.output
            assert "?code=" not in run.output and "export" not in run.output


def test_a_code_works_once_across_workers_and_wrong_codes_are_limited(tmp_path: Path) -> None:
    with MakeRun(tmp_path, env={"PROCWIRE_WORKERS": "2"}) as run:
        run.read_block()
        code = run.login_code()
        results: list[int] = []

        def redeem() -> None:
            results.append(post_code(run, code)[0])

        threads = [threading.Thread(target=redeem) for _ in range(12)]  # spread over both workers
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(results) == [200] + [403] * 11
        assert post_code(run, "x", origin="https://evil.example")[0] == 403
        statuses = [post_code(run, f"wrong-{attempt}")[0] for attempt in range(30)]
        assert statuses.count(429) >= 10 and set(statuses) == {403, 429}
