"""config.serve: websocketd's flags read as Go reads them, and turned into the settings the
server loads, on top of the TOML file (tests/test_serve.py runs the command itself)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.programs import stop_sequence
from config.serve import UsageError, gunicorn_command, parse, server_environment
from config.settings import Settings, load_settings

CONFIG = """\
max_program_procs = 7
allowed_origins = ["https://kept.example"]

[program_defaults]
stderr = "merge"
mode = "text"

[programs.other]
argv = ["/bin/echo", "other"]
"""


def settings_for(argv: list[str], cwd: Path, environ: dict[str, str] | None = None) -> Settings:
    return load_settings(server_environment(parse(argv), environ or {}, str(cwd)))


def test_go_flag_syntax_and_the_command_after_the_first_non_flag() -> None:
    options = parse(["-port", "80", "--binary=false", "--address=a", "-address=b", "sh", "-c", "--port=1"])
    assert options.flags == {"port": "80", "binary": False}
    assert options.addresses == ["a", "b"]
    assert options.command == ["sh", "-c", "--port=1"]
    assert parse(["--public", "--", "-x"]).command == ["-x"]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--port"], "--port needs a value"),
        (["--binary=maybe"], "--binary=maybe: true or false"),
        (["--sslkey=k"], "--sslkey is not supported by procwire serve: TLS belongs to nginx"),
        (["-x"], "unknown flag -x"),
    ],
)
def test_refused_flags(argv: list[str], said: str) -> None:
    with pytest.raises(UsageError, match=said):
        parse(argv)


def test_the_config_file_applies_and_the_flags_win(tmp_path: Path) -> None:
    (tmp_path / "procwire.toml").write_text(CONFIG)
    argv = ["--maxforks=3", "--binary", "--closems=50", "--public", "--passenv=HOME", "/bin/cat", "-u"]
    settings = settings_for(argv, tmp_path, {"PROCWIRE_CONFIG": "procwire.toml"})  # relative to where serve runs
    assert settings.MAX_PROGRAM_PROCS == 3
    assert settings.ALLOWED_ORIGINS == ["https://kept.example"]
    defaults = settings.PROGRAM_DEFAULTS
    assert (defaults.stderr, defaults.mode, defaults.public, defaults.passenv) == ("merge", "binary", True, ["HOME"])
    assert defaults.stop == list(stop_sequence(50))
    assert defaults.cwd == str(tmp_path)
    assert settings.PROGRAMS["other"].argv == ["/bin/echo", "other"]
    assert settings.PROGRAMS["cat"].argv == ["/bin/cat", "-u"]
    assert settings.PROGRAMS_ROOT == "cat"


def test_addresses_ports_and_origins(tmp_path: Path) -> None:
    argv = ["--address=0.0.0.0", "--address=::1", "--port=8080", "--origin=a.example,https://b.example:8443"]
    settings = settings_for(argv, tmp_path)
    assert settings.BIND == "0.0.0.0:8080"
    assert settings.ALLOWED_ORIGINS == ["http://a.example", "https://a.example", "https://b.example:8443"]
    assert gunicorn_command(parse(argv))[-4:] == ["--bind", "0.0.0.0:8080", "--bind", "[::1]:8080"]
    assert settings_for(["--port=8080"], tmp_path).BIND == "127.0.0.1:8080"
    assert settings_for([], tmp_path, {"PROCWIRE_BIND": "127.0.0.1:7000"}).BIND == "127.0.0.1:7000"
