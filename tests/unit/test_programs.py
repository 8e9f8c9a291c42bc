"""The program endpoints' pure parts: line framing, the CGI environment, the catalog, close codes."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.programs.catalog import BadArguments, Catalog
from app.programs.cgi_env import HIDDEN_HEADERS, Request, cgi_variables, program_environment, without_token
from app.programs.ending import close_for_exit, reason_text
from app.programs.lines import Lines
from app.programs.session import hidden_headers
from config import ConfigError, Settings, load_settings
from config.programs import stop_sequence


def settings_with(**values: str) -> object:
    return load_settings({f"PROCWIRE_{key}": value for key, value in values.items()})


# -- lines --------------------------------------------------------------------------------------


def test_lines_end_at_newline_without_it_and_without_a_carriage_return() -> None:
    lines = Lines(100)
    assert lines.feed(b"one\r\ntw") == ["one"]
    assert lines.feed(b"o\nthree\nfour") == ["two", "three"]
    assert lines.finish() == ["four"]  # websocketd drops this one
    assert lines.finish() == []


def test_an_empty_line_is_an_empty_message() -> None:
    assert Lines(10).feed(b"\n\n") == ["", ""]


def test_invalid_utf8_goes_as_binary_with_its_exact_bytes() -> None:
    assert Lines(10).feed(b"ok\xff\xfe\n") == [b"ok\xff\xfe"]


def test_an_overlong_line_is_split_between_characters() -> None:
    lines = Lines(5)
    assert lines.feed("abcdé".encode()) == ["abcd"]  # é would straddle the limit
    assert lines.feed(b"fgh\n") == ["éfgh"]


@given(st.lists(st.binary(max_size=40), max_size=20), st.integers(min_value=4, max_value=16))
def test_no_byte_is_lost_added_or_reordered(chunks: list[bytes], limit: int) -> None:
    """Joined back (a newline after each line that had one), the messages are the input:
    whatever the chunking, the line lengths and the byte values."""
    lines = Lines(limit)
    messages = [message for chunk in chunks for message in lines.feed(chunk)]
    messages += lines.finish()
    data = b"".join(chunks).replace(b"\r\n", b"\n")
    pieces = [m.encode() if isinstance(m, str) else m for m in messages]
    assert all(len(piece) <= limit for piece in pieces)
    assert b"".join(pieces) == data.replace(b"\n", b"")


@given(st.lists(st.binary(max_size=40), max_size=20))
def test_below_the_limit_each_line_is_one_message(chunks: list[bytes]) -> None:
    lines = Lines(1 << 20)
    messages = [message for chunk in chunks for message in lines.feed(chunk)] + lines.finish()
    data = b"".join(chunks).replace(b"\r\n", b"\n")
    expected = data.split(b"\n")
    if expected[-1] == b"":
        expected.pop()  # the last line had its newline: nothing follows it
    assert [m.encode() if isinstance(m, str) else m for m in messages] == expected


# -- the environment -----------------------------------------------------------------------------


ENVIRON = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/programs/env/more",
    "QUERY_STRING": "a=1&token=secret&b=x%20y&tok%65n=also",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "10.1.2.3",
    "REMOTE_PORT": "5555",
    "HTTP_HOST": "example.org:8080",
    "HTTP_AUTHORIZATION": "Bearer secret",
    "HTTP_X_THING": "one\ntwo",
    "wsgi.url_scheme": "https",
}


def request(user: str | None = "alice") -> Request:
    return Request(ENVIRON, "/programs/env", "/more", user, "abc123", "procwire/1")


def test_cgi_variables_as_websocketd_names_them_and_never_the_token() -> None:
    variables = cgi_variables(request())
    assert variables["QUERY_STRING"] == "a=1&b=x%20y"
    assert variables["REQUEST_URI"] == "/programs/env/more?a=1&b=x%20y"
    assert (variables["SCRIPT_NAME"], variables["PATH_INFO"]) == ("/programs/env", "/more")
    assert (variables["SERVER_NAME"], variables["SERVER_PORT"], variables["HTTPS"]) == ("example.org", "8080", "on")
    assert (variables["REMOTE_ADDR"], variables["REMOTE_PORT"], variables["REMOTE_USER"]) == (
        "10.1.2.3",
        "5555",
        "alice",
    )
    assert variables["HTTP_X_THING"] == "one two" and variables["UNIQUE_ID"] == "abc123"
    assert variables["GATEWAY_INTERFACE"] == "CGI/1.1" and variables["AUTH_TYPE"] == "Bearer"
    assert "HTTP_AUTHORIZATION" not in variables
    assert not any("secret" in value for value in variables.values())


def test_the_auth_proxy_secret_never_reaches_a_program() -> None:
    proxy = {"secret_header": "X-Front-Key", "secret_sha256": "0" * 64, "default_role": "user"}
    settings = Settings.model_validate({"PROXY_COUNT": 1, "AUTH_PROXY": proxy})
    environ = {**ENVIRON, "HTTP_X_FRONT_KEY": "front-secret", "HTTP_X_FORWARDED_USER": "alice"}
    plain = Request(environ, "/programs/env", "/more", "alice", "abc123", "procwire/1")
    hidden = Request(environ, "/programs/env", "/more", "alice", "abc123", "procwire/1", hidden_headers(settings))
    assert cgi_variables(plain)["HTTP_X_FRONT_KEY"] == "front-secret"  # what the rule is there for
    variables = cgi_variables(hidden)
    assert "HTTP_X_FRONT_KEY" not in variables and "HTTP_AUTHORIZATION" not in variables
    assert variables["HTTP_X_FORWARDED_USER"] == "alice"
    assert hidden_headers(Settings()) == HIDDEN_HEADERS


def test_a_tokenless_client_has_no_remote_user() -> None:
    variables = cgi_variables(request(user=None))
    assert variables["REMOTE_USER"] == "" and variables["AUTH_TYPE"] == ""


def test_passenv_then_cgi_then_the_programs_own() -> None:
    server = {"PATH": "/bin", "HOME": "/root", "PROCWIRE_TOKEN": "secret"}
    variables = program_environment(request(), server, ("PATH", "LD_LIBRARY_PATH"), {"REMOTE_USER": "set"})
    assert variables["PATH"] == "/bin" and "HOME" not in variables and "LD_LIBRARY_PATH" not in variables
    assert variables["REMOTE_USER"] == "set"


def test_without_token_keeps_the_rest_as_sent() -> None:
    assert without_token("token=x") == ""
    assert without_token("x=%2F&token=1&y") == "x=%2F&y"


# -- the catalog ------------------------------------------------------------------------------------


def test_declared_programs_take_defaults_and_fill_arguments(tmp_path: Path) -> None:
    settings = settings_with(
        PROGRAMS='{"greet": {"argv": ["echo", "hi {name}!"], "args": {"name": {"pattern": "[a-z]+"}}}}',
        PROGRAM_DEFAULTS='{"mode": "binary", "roles": ["user"]}',
    )
    catalog = Catalog(settings)  # type: ignore[arg-type]
    found = catalog.find("/programs/greet/x/y")
    assert found is not None
    program, script_name, path_info = found
    assert (script_name, path_info, program.mode, program.roles) == ("/programs/greet", "/x/y", "binary", {"user"})
    assert [step.signal for step in program.stop] == ["INT", "TERM", "KILL"]
    assert program.argv_for({"name": "bob"}) == ["echo", "hi bob!"]
    with pytest.raises(BadArguments, match="required"):
        program.argv_for({})
    with pytest.raises(BadArguments, match="does not match"):
        program.argv_for({"name": "bob; rm -rf /"})
    assert catalog.find("/programs/other") is None and catalog.find("/ws") is None


def test_a_directory_serves_its_executables_only(tmp_path: Path) -> None:
    for name, mode in (("run.sh", 0o755), ("data.txt", 0o644), (".hidden", 0o755)):
        (tmp_path / name).write_text("#!/bin/sh\n")
        os.chmod(tmp_path / name, mode)
    (tmp_path / "sub").mkdir()
    catalog = Catalog(settings_with(PROGRAMS_DIR=str(tmp_path)))  # type: ignore[arg-type]
    assert catalog.names() == ["run.sh"]
    found = catalog.find("/programs/run.sh/extra")
    assert found is not None and found[0].argv == (str(tmp_path / "run.sh"),) and found[2] == "/extra"
    for refused in ("data.txt", ".hidden", "sub", "..", "missing"):
        assert catalog.find(f"/programs/{refused}") is None
    assert stat.S_IMODE(os.stat(tmp_path / "run.sh").st_mode) == 0o755


def test_the_root_program_is_also_at_slash() -> None:
    settings = settings_with(PROGRAMS='{"count": {"argv": ["seq", "3"]}}', PROGRAMS_ROOT="count")
    found = Catalog(settings).find("/")  # type: ignore[arg-type]
    assert found is not None and found[0].name == "count"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"PROGRAMS": '{"x": {"argv": ["a", "{y}"]}}'}, "{y} is not declared"),
        ({"PROGRAMS": '{"x": {}}'}, "argv is required"),
        ({"PROGRAMS": '{"x y": {"argv": ["a"]}}'}, "not a program name"),
        ({"PROGRAMS": '{"x": {"argv": ["a"], "stop": [{"signal": "TERM", "after": 1}]}}'}, "must send KILL"),
        ({"PROGRAMS": '{"x": {"argv": ["a"], "args": {"n": {"pattern": "("}}}}'}, "not a regular expression"),
        ({"PROGRAMS_ROOT": "nope"}, "not in PROGRAMS"),
        ({"PROGRAM_DEFAULTS": '{"argv": ["a"]}'}, "belong in a [programs.NAME]"),
    ],
)
def test_bad_program_settings_say_what_is_wrong(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        settings_with(**values)


def test_closems_lengthens_each_wait_as_websocketd_does() -> None:
    assert [(step.signal, step.after) for step in stop_sequence(100)] == [("INT", 0.2), ("TERM", 0.55), ("KILL", 1.15)]


# -- close codes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"code": 0, "signal": None}, (1000, "exit status 0")),
        ({"code": 3, "signal": None}, (4003, "exit status 3")),
        ({"code": 255, "signal": None}, (4255, "exit status 255")),
        ({"code": None, "signal": "SIGKILL"}, (4309, "killed by SIGKILL")),
        ({"code": None, "signal": "SIGTERM"}, (4315, "killed by SIGTERM")),
    ],
)
def test_the_close_code_tells_how_the_program_ended(status: dict[str, object], expected: tuple[int, str]) -> None:
    assert close_for_exit(status) == expected


def test_a_long_reason_fits_a_close_frame() -> None:
    text = reason_text("é" * 200)
    assert len(text.encode()) <= 123 and text.endswith("...")
