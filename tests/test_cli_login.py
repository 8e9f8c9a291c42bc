"""``procwire login`` / ``logout``: the URL and token kept in a per-user file, so no variables are needed."""

from __future__ import annotations

import configparser
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import Server
from tests.test_cli_support import Terminal, cli_env, one_line, opened_terminals, procwire, procwire_line


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    yield from opened_terminals()


def bare_env(server: Server, config_home: Path, **extra: str) -> dict[str, str]:
    """No PROCWIRE_* variables at all: only what login stored (in ``config_home``) can help."""
    env = {key: value for key, value in cli_env(server).items() if not key.startswith("PROCWIRE_")}
    env.update(XDG_CONFIG_HOME=str(config_home), **extra)
    return env


def stored(config_home: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(config_home / "procwire" / "config.ini")
    return parser


def http_url(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}"


def test_login_with_a_token_then_nothing_else_is_needed(server: Server, tmp_path: Path) -> None:
    env = bare_env(server, tmp_path)
    before = procwire(server, "run", "--", "echo", "hi", env=env)
    assert before.returncode == 2 and "procwire login" in one_line(before.stderr)

    done = procwire(server, "login", http_url(server), "--token", server.token, env=env)
    assert done.returncode == 0, done.stderr
    assert "logged in to ws://127.0.0.1" in one_line(done.stderr)
    path = tmp_path / "procwire" / "config.ini"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert dict(stored(tmp_path)["server"]) == {"url": server.url, "token": server.token}
    assert [entry.name for entry in path.parent.iterdir()] == ["config.ini"]  # no temporary file left

    ran = procwire(server, "run", "--", "echo", "hi", env=env)
    assert (ran.returncode, ran.stdout) == (0, b"hi\n"), ran.stderr


def test_the_token_from_the_url_or_from_stdin(server: Server, tmp_path: Path) -> None:
    pasted = f"{http_url(server)}/?token={server.token}"
    in_url = procwire(server, "login", pasted, env=bare_env(server, tmp_path / "a"))
    assert in_url.returncode == 0, in_url.stderr
    assert stored(tmp_path / "a")["server"]["token"] == server.token
    line = f"{server.token}\n".encode()
    piped = procwire(server, "login", http_url(server), input=line, env=bare_env(server, tmp_path / "b"))
    assert piped.returncode == 0, piped.stderr
    assert stored(tmp_path / "b")["server"]["token"] == server.token


def test_on_a_terminal_the_token_is_asked_for_without_echo(
    server: Server, tmp_path: Path, terminals: list[Terminal]
) -> None:
    terminal = Terminal(f'{procwire_line("login", http_url(server))}; echo "rc=$?"', bare_env(server, tmp_path))
    terminals.append(terminal)
    terminal.read_until(r"Token: ")
    terminal.write(server.token + "\r")
    assert terminal.finish() == 0
    assert b"rc=0" in terminal.output
    assert server.token.encode() not in terminal.output  # typed, never shown
    assert stored(tmp_path)["server"]["token"] == server.token


def test_a_wrong_token_is_refused_and_nothing_is_stored(server: Server, tmp_path: Path) -> None:
    done = procwire(server, "login", http_url(server), "--token", "wrong", env=bare_env(server, tmp_path))
    assert done.returncode == 1 and "HTTP 401" in one_line(done.stderr)
    assert not (tmp_path / "procwire" / "config.ini").exists()


def test_the_environment_still_comes_first(server: Server, tmp_path: Path) -> None:
    env = bare_env(server, tmp_path)
    assert procwire(server, "login", server.url, "--token", server.token, env=env).returncode == 0
    wrong = procwire(server, "run", "--", "true", env={**env, "PROCWIRE_TOKEN": "wrong"})
    assert wrong.returncode == 1 and "HTTP 401" in one_line(wrong.stderr)
    other = procwire(server, "run", "--", "true", env={**env, "PROCWIRE_URL": "ws://127.0.0.1:1/ws"})
    assert other.returncode == 2 and "no token" in one_line(other.stderr)  # the stored token goes to its server only


def test_logout_forgets(server: Server, tmp_path: Path) -> None:
    env = bare_env(server, tmp_path)
    assert procwire(server, "login", server.url, "--token", server.token, env=env).returncode == 0
    done = procwire(server, "logout", env=env)
    assert done.returncode == 0 and "logged out" in one_line(done.stderr)
    assert not (tmp_path / "procwire" / "config.ini").exists()
    assert procwire(server, "run", "--", "true", env=env).returncode == 2
    again = procwire(server, "logout", env=env)
    assert again.returncode == 0 and "not logged in" in one_line(again.stderr)


def test_without_xdg_config_home_the_file_is_under_home(server: Server, tmp_path: Path) -> None:
    env = bare_env(server, tmp_path, HOME=str(tmp_path))
    del env["XDG_CONFIG_HOME"]
    assert procwire(server, "login", server.url, "--token", server.token, env=env).returncode == 0
    assert (tmp_path / ".config" / "procwire" / "config.ini").exists()
    assert os.stat(tmp_path / ".config" / "procwire").st_mode & 0o077 == 0
