"""config.settings: defaults, the TOML file, PROCWIRE_<KEY> variables, one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import ConfigError, Settings, load_settings

MIB = 1024 * 1024


def write_toml(tmp_path: Path, text: str | bytes, name: str = "procwire.toml") -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def config_error(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message, message
    assert message.strip() == message and message
    return message


# -- defaults ---------------------------------------------------------------------


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.BIND == "127.0.0.1:9999"
    assert settings.TOKEN == ""
    assert settings.KILL_GRACE == 2
    assert settings.MAX_MESSAGE_BYTES == MIB
    assert settings.MAX_PROCS_PER_CLIENT == 64
    assert settings.ALLOWED_ORIGINS == []
    assert settings.PING_INTERVAL == 25
    assert settings.COMPRESSION is False
    assert settings == Settings()


def test_settings_are_frozen() -> None:
    settings = load_settings({})
    with pytest.raises(ValueError, match="frozen"):
        settings.BIND = "0.0.0.0:1"  # type: ignore[misc]


def test_reads_os_environ_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PROCWIRE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PROCWIRE_MAX_PROCS_PER_CLIENT", "3")
    assert load_settings().MAX_PROCS_PER_CLIENT == 3


def test_unrelated_variables_are_ignored() -> None:
    environ = {"BIND": "x", "PATH": "/bin", "PROCWIRE": "1", "XPROCWIRE_BIND": "x", "procwire_bind": "x"}
    assert load_settings(environ) == Settings()


# -- environment variables -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "key", "expected"),
    [
        ("PROCWIRE_KILL_GRACE", "5", "KILL_GRACE", 5.0),
        ("PROCWIRE_KILL_GRACE", "0.25", "KILL_GRACE", 0.25),
        ("PROCWIRE_KILL_GRACE", "0", "KILL_GRACE", 0.0),
        ("PROCWIRE_MAX_MESSAGE_BYTES", "2097152", "MAX_MESSAGE_BYTES", 2 * MIB),
        ("PROCWIRE_MAX_PROCS_PER_CLIENT", "1", "MAX_PROCS_PER_CLIENT", 1),
        ("PROCWIRE_PING_INTERVAL", "0", "PING_INTERVAL", 0.0),
        ("PROCWIRE_COMPRESSION", "true", "COMPRESSION", True),
        ("PROCWIRE_COMPRESSION", "false", "COMPRESSION", False),
        ("PROCWIRE_BIND", "0.0.0.0:8080", "BIND", "0.0.0.0:8080"),
        ("PROCWIRE_BIND", "unix:/run/procwire.sock", "BIND", "unix:/run/procwire.sock"),
        ("PROCWIRE_TOKEN", "s3cret", "TOKEN", "s3cret"),
        ("PROCWIRE_LOG_LEVEL", "debug", "LOG_LEVEL", "debug"),
    ],
)
def test_environment_value(name: str, raw: str, key: str, expected: Any) -> None:
    value = getattr(load_settings({name: raw}), key)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("raw", ["123", "true", "null", "[1]", '{"a": 1}', "1.5", ' "quoted" '])
def test_string_settings_keep_the_raw_text(raw: str) -> None:
    # JSON would turn TOKEN=123 into a number; a string setting takes the text as it is.
    token = load_settings({"PROCWIRE_TOKEN": raw}).TOKEN
    bind = load_settings({"PROCWIRE_BIND": raw}).BIND
    assert token == raw
    assert bind == raw


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('["https://a.example", "http://b.example:8080"]', ["https://a.example", "http://b.example:8080"]),
        ("https://a.example,http://b.example:8080", ["https://a.example", "http://b.example:8080"]),
        (" https://a.example , https://b.example ,", ["https://a.example", "https://b.example"]),
        ("https://a.example", ["https://a.example"]),
        ("*", ["*"]),
        ("", []),
        ("[]", []),
    ],
)
def test_allowed_origins_from_the_environment(raw: str, expected: list[str]) -> None:
    origins = load_settings({"PROCWIRE_ALLOWED_ORIGINS": raw}).ALLOWED_ORIGINS
    assert origins == expected


def test_many_variables_at_once() -> None:
    settings = load_settings(
        {"PROCWIRE_BIND": "127.0.0.1:1", "PROCWIRE_KILL_GRACE": "3", "PROCWIRE_TOKEN": "t", "HOME": "/root"}
    )
    assert (settings.BIND, settings.KILL_GRACE, settings.TOKEN) == ("127.0.0.1:1", 3.0, "t")
    assert settings.MAX_PROCS_PER_CLIENT == 64


def test_unknown_environment_key() -> None:
    assert config_error({"PROCWIRE_NOPE": "1"}) == "PROCWIRE_NOPE: unknown setting"


def test_lower_case_key_in_the_environment_is_unknown() -> None:
    assert config_error({"PROCWIRE_bind": "x"}) == "PROCWIRE_bind: unknown setting"


@pytest.mark.parametrize(
    ("name", "raw", "key"),
    [
        ("PROCWIRE_KILL_GRACE", "abc", "KILL_GRACE"),
        ("PROCWIRE_KILL_GRACE", "-1", "KILL_GRACE"),
        ("PROCWIRE_KILL_GRACE", "3601", "KILL_GRACE"),
        ("PROCWIRE_KILL_GRACE", "NaN", "KILL_GRACE"),
        ("PROCWIRE_KILL_GRACE", "a\nb", "KILL_GRACE"),
        ("PROCWIRE_DRAIN_TIMEOUT", "-0.5", "DRAIN_TIMEOUT"),
        ("PROCWIRE_MAX_MESSAGE_BYTES", "1023", "MAX_MESSAGE_BYTES"),
        ("PROCWIRE_MAX_MESSAGE_BYTES", "1.5", "MAX_MESSAGE_BYTES"),
        ("PROCWIRE_MAX_MESSAGE_BYTES", "1MiB", "MAX_MESSAGE_BYTES"),
        ("PROCWIRE_MAX_PROCS_PER_CLIENT", "0", "MAX_PROCS_PER_CLIENT"),
        ("PROCWIRE_PING_INTERVAL", "-1", "PING_INTERVAL"),
        ("PROCWIRE_PING_INTERVAL", "NaN", "PING_INTERVAL"),
        ("PROCWIRE_COMPRESSION", "maybe", "COMPRESSION"),
        ("PROCWIRE_COMPRESSION", "[true]", "COMPRESSION"),
        ("PROCWIRE_ALLOWED_ORIGINS", "5", "ALLOWED_ORIGINS"),
        ("PROCWIRE_ALLOWED_ORIGINS", '{"a": 1}', "ALLOWED_ORIGINS"),
        ("PROCWIRE_BIND", "", "BIND"),
        ("PROCWIRE_LOG_LEVEL", "loud", "LOG_LEVEL"),
        ("PROCWIRE_LOG_LEVEL", "info\n", "LOG_LEVEL"),
        ("PROCWIRE_PROXY_COUNT", "11", "PROXY_COUNT"),
        ("PROCWIRE_WORKER_CONNECTIONS", "0", "WORKER_CONNECTIONS"),
    ],
)
def test_bad_environment_value_names_the_key(name: str, raw: str, key: str) -> None:
    message = config_error({name: raw})
    assert message.startswith(f"{key}: ") or message.startswith(f"{key}."), message


def test_bad_value_message_shows_the_value() -> None:
    assert config_error({"PROCWIRE_MAX_PROCS_PER_CLIENT": "0"}) == (
        "MAX_PROCS_PER_CLIENT: Input should be greater than or equal to 1 (got 0)"
    )
    assert config_error({"PROCWIRE_KILL_GRACE": "soon"}).endswith("(got 'soon')")


# -- the TOML file ----------------------------------------------------------------


def test_toml_file(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        'BIND = "0.0.0.0:7000"\nTOKEN = "from-file"\nKILL_GRACE = 0.5\n'
        'ALLOWED_ORIGINS = ["https://ide.example"]\nCOMPRESSION = true\nMAX_PROCS_PER_CLIENT = 8\n',
    )
    settings = load_settings({"PROCWIRE_CONFIG": path})
    assert settings.BIND == "0.0.0.0:7000"
    assert settings.TOKEN == "from-file"
    assert settings.KILL_GRACE == 0.5
    assert settings.ALLOWED_ORIGINS == ["https://ide.example"]
    assert settings.COMPRESSION is True
    assert settings.MAX_PROCS_PER_CLIENT == 8
    assert settings.PING_INTERVAL == 25  # untouched default


def test_toml_keys_may_be_lower_case(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'bind = "127.0.0.1:1234"\nmax_message_bytes = 4096\n')
    settings = load_settings({"PROCWIRE_CONFIG": path})
    assert (settings.BIND, settings.MAX_MESSAGE_BYTES) == ("127.0.0.1:1234", 4096)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'BIND = "127.0.0.1:1"\nKILL_GRACE = 7\n')
    settings = load_settings({"PROCWIRE_CONFIG": path, "PROCWIRE_BIND": "127.0.0.1:2"})
    assert settings.BIND == "127.0.0.1:2"
    assert settings.KILL_GRACE == 7


def test_empty_config_variable_means_no_file() -> None:
    assert load_settings({"PROCWIRE_CONFIG": ""}) == Settings()


def test_empty_toml_file_gives_defaults(tmp_path: Path) -> None:
    assert load_settings({"PROCWIRE_CONFIG": write_toml(tmp_path, "")}) == Settings()


def test_unknown_key_in_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "colour = 1\n")
    message = config_error({"PROCWIRE_CONFIG": path})
    assert message.startswith("COLOUR: "), message


def test_table_in_the_file_is_an_unknown_key(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[server]\nbind = "x"\n')
    assert config_error({"PROCWIRE_CONFIG": path}).startswith("SERVER: ")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("TOKEN = 123\n", "TOKEN"),
        ('KILL_GRACE = "soon"\n', "KILL_GRACE"),
        ("KILL_GRACE = 1e9\n", "KILL_GRACE"),
        ("MAX_MESSAGE_BYTES = 10\n", "MAX_MESSAGE_BYTES"),
        ("ALLOWED_ORIGINS = 5\n", "ALLOWED_ORIGINS"),
        ("ALLOWED_ORIGINS = [1]\n", "ALLOWED_ORIGINS"),
        ('COMPRESSION = "sometimes"\n', "COMPRESSION"),
        ('LOG_LEVEL = "LOUD"\n', "LOG_LEVEL"),
    ],
)
def test_bad_value_in_the_file_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    message = config_error({"PROCWIRE_CONFIG": write_toml(tmp_path, text)})
    assert message.startswith(f"{key}: ") or message.startswith(f"{key}."), message


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.toml")
    assert config_error({"PROCWIRE_CONFIG": path}) == f"PROCWIRE_CONFIG: cannot read {path}: No such file or directory"


def test_directory_as_file(tmp_path: Path) -> None:
    assert config_error({"PROCWIRE_CONFIG": str(tmp_path)}) == (
        f"PROCWIRE_CONFIG: cannot read {tmp_path}: Is a directory"
    )


def test_invalid_toml(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "BIND = \nKILL_GRACE = 1\n")
    message = config_error({"PROCWIRE_CONFIG": path})
    assert message.startswith(f"PROCWIRE_CONFIG: {path} is not valid TOML: "), message
    assert "line 1" in message


def test_bad_file_is_reported_before_environment_problems(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.toml")
    message = config_error({"PROCWIRE_CONFIG": path, "PROCWIRE_NOPE": "1"})
    assert message.startswith("PROCWIRE_CONFIG: ")


# -- bad input that escapes as something other than ConfigError --------------------


def test_config_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = write_toml(tmp_path, b'BIND = "caf\xe9"\n')
    assert config_error({"PROCWIRE_CONFIG": path}).startswith("PROCWIRE_CONFIG: ")


def test_environment_number_with_too_many_digits() -> None:
    assert config_error({"PROCWIRE_MAX_PROCS_PER_CLIENT": "9" * 5000}).startswith("MAX_PROCS_PER_CLIENT: ")


def test_environment_value_nested_too_deeply() -> None:
    assert config_error({"PROCWIRE_ALLOWED_ORIGINS": "[" * 100_000}).startswith("ALLOWED_ORIGINS")


def test_toml_number_with_too_many_digits(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "MAX_PROCS_PER_CLIENT = " + "9" * 5000 + "\n")
    message = config_error({"PROCWIRE_CONFIG": path})
    assert message.startswith("MAX_PROCS_PER_CLIENT") or message.startswith("PROCWIRE_CONFIG")


# -- properties -------------------------------------------------------------------

KEYS = sorted(Settings.model_fields)


@given(key=st.sampled_from(KEYS), raw=st.text(max_size=30))
def test_any_environment_value_loads_or_fails_in_one_line_naming_the_key(key: str, raw: str) -> None:
    try:
        settings = load_settings({f"PROCWIRE_{key}": raw})
    except ConfigError as error:
        message = str(error)
        assert "\n" not in message
        assert message.startswith(f"{key}: ") or message.startswith(f"{key}."), message
    else:
        assert isinstance(settings, Settings)
        # every other setting keeps its default
        defaults = Settings().model_dump()
        loaded = settings.model_dump()
        assert {k: v for k, v in loaded.items() if k != key} == {k: v for k, v in defaults.items() if k != key}


@given(st.integers(min_value=-(10**6), max_value=10**6))
def test_integer_bounds(number: int) -> None:
    environ = {"PROCWIRE_MAX_PROCS_PER_CLIENT": str(number)}
    if number >= 1:
        limit = load_settings(environ).MAX_PROCS_PER_CLIENT
        assert limit == number
    else:
        assert config_error(environ).startswith("MAX_PROCS_PER_CLIENT: ")


@given(st.lists(st.from_regex(r"https?://[a-z]{1,8}\.example(:[0-9]{2,5})?", fullmatch=True), max_size=5))
def test_origin_list_comma_and_json_forms_agree(origins: list[str]) -> None:
    by_commas = load_settings({"PROCWIRE_ALLOWED_ORIGINS": ",".join(origins)}).ALLOWED_ORIGINS
    by_json = load_settings({"PROCWIRE_ALLOWED_ORIGINS": json.dumps(origins)}).ALLOWED_ORIGINS
    assert by_commas == by_json == origins
