"""app.params: strict validation of each method's params, with no I/O."""

from __future__ import annotations

import base64
import re
import signal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from app.errors import ErrorCode, RpcError
from app.protocol import params as P

ALL_MODELS = [
    P.NoParams,
    P.LookpathParams,
    P.StartParams,
    P.RunParams,
    P.ProcParams,
    P.WriteParams,
    P.SignalParams,
    P.StopParams,
    P.WaitParams,
    P.FindParams,
]
MINIMAL: dict[type[P.Params], dict[str, Any]] = {
    P.NoParams: {},
    P.LookpathParams: {"file": "sh"},
    P.StartParams: {"argv": ["echo"]},
    P.RunParams: {"argv": ["echo"]},
    P.ProcParams: {"proc": 1},
    P.WriteParams: {"proc": 1, "data": ""},
    P.SignalParams: {"proc": 1, "signal": "TERM"},
    P.StopParams: {"proc": 1},
    P.WaitParams: {"proc": 1},
    P.FindParams: {"pid": 1},
}


def invalid(model: type[P.Params], raw: dict[str, Any]) -> str:
    """The message of the INVALID_PARAMS error ``raw`` gets."""
    with pytest.raises(RpcError) as caught:
        P.validate(model, raw)
    assert caught.value.code == ErrorCode.INVALID_PARAMS
    assert caught.value.data is None
    message = caught.value.message
    assert message.startswith("Invalid params: ")
    assert "\n" not in message
    return message


def field_named(message: str) -> str:
    """The location the message names: ``Invalid params: <where>: <problem>``."""
    return message.removeprefix("Invalid params: ").split(": ", 1)[0]


def top_field(message: str) -> str:
    """The top-level field of the location: ``argv`` of ``argv[1]``, ``env`` of ``env.HOME``."""
    return re.split(r"[.\[]", field_named(message))[0]


# -- defaults ---------------------------------------------------------------------


def test_start_defaults() -> None:
    params = P.validate(P.StartParams, {"argv": ["ls", "-l"]})
    assert isinstance(params, P.StartParams)
    assert params.model_dump() == {
        "argv": ["ls", "-l"],
        "env": {},
        "clear_env": False,
        "cwd": None,
        "stdin": "pipe",
        "stderr": "pipe",
        "timeout": None,
        "encoding": "text",
        "name": None,
        "command": None,
        "record": None,
        "binary": False,
        "pty": None,
        "on_disconnect": "kill",
        "size_rule": "latest",
        "buffer": None,
    }


def test_run_defaults() -> None:
    params = P.validate(P.RunParams, {"argv": ["true"]})
    assert params.input is None
    assert params.input_encoding == "text"
    assert params.max_output == 16 * 1024 * 1024
    assert params.stdin == "pipe"


def test_signal_stop_wait_defaults() -> None:
    assert P.validate(P.SignalParams, {"proc": 2, "signal": "KILL"}).group is True
    stop = P.validate(P.StopParams, {"proc": 2})
    assert (stop.signal, stop.grace) == (signal.SIGTERM, None)
    assert P.validate(P.WaitParams, {"proc": 2}).timeout is None
    assert P.validate(P.WriteParams, {"proc": 2, "data": "x"}).encoding == "text"


def test_every_field_set() -> None:
    raw = {
        "argv": ["sh", "-c", "exit 0"],
        "env": {"A": "1", "B": None, "C": ""},
        "clear_env": True,
        "cwd": "/tmp",
        "stdin": "null",
        "stderr": "stdout",
        "timeout": 0.25,
        "encoding": "base64",
        "name": "",
        "command": "sh -c 'exit 0'",
        "record": {"input": True},
        "input": "aGk=",
        "input_encoding": "base64",
        "max_output": 0,
    }
    assert P.validate(P.RunParams, raw).model_dump() == raw


@pytest.mark.parametrize("model", ALL_MODELS)
def test_minimal_params_are_accepted(model: type[P.Params]) -> None:
    assert isinstance(P.validate(model, MINIMAL[model]), model)


@pytest.mark.parametrize("model", ALL_MODELS)
def test_unknown_field_is_refused_and_named(model: type[P.Params]) -> None:
    message = invalid(model, {**MINIMAL[model], "bogus": 1})
    assert message == "Invalid params: bogus: is not a parameter of this method"


def test_validated_params_are_frozen() -> None:
    params = P.validate(P.ProcParams, {"proc": 1})
    with pytest.raises(ValidationError):
        params.proc = 2  # type: ignore[misc]


# -- required fields --------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "raw", "missing"),
    [
        (P.LookpathParams, {}, "file"),
        (P.StartParams, {}, "argv"),
        (P.RunParams, {"input": "x"}, "argv"),
        (P.ProcParams, {}, "proc"),
        (P.WriteParams, {"proc": 1}, "data"),
        (P.WriteParams, {"data": "x"}, "proc"),
        (P.SignalParams, {"proc": 1}, "signal"),
        (P.StopParams, {}, "proc"),
        (P.WaitParams, {}, "proc"),
        (P.FindParams, {}, "pid"),
    ],
)
def test_missing_required_field_is_named(model: type[P.Params], raw: dict[str, Any], missing: str) -> None:
    assert invalid(model, raw) == f"Invalid params: {missing}: is required"


# -- strict types: no coercion ----------------------------------------------------


@pytest.mark.parametrize(
    ("model", "raw", "where"),
    [
        (P.ProcParams, {"proc": "1"}, "proc"),
        (P.ProcParams, {"proc": 1.0}, "proc"),
        (P.ProcParams, {"proc": True}, "proc"),
        (P.ProcParams, {"proc": None}, "proc"),
        (P.FindParams, {"pid": "42"}, "pid"),
        (P.FindParams, {"pid": 4.2}, "pid"),
        (P.LookpathParams, {"file": 5}, "file"),
        (P.LookpathParams, {"file": None}, "file"),
        (P.StartParams, {"argv": "ls -l"}, "argv"),
        (P.StartParams, {"argv": ["ls", 1]}, "argv[1]"),
        (P.StartParams, {"argv": [None]}, "argv[0]"),
        (P.StartParams, {"argv": [["ls"]]}, "argv[0]"),
        (P.StartParams, {"argv": ("ls",)}, "argv"),
        (P.StartParams, {"argv": ["ls"], "env": {"A": 1}}, "env.A"),
        (P.StartParams, {"argv": ["ls"], "env": {"A": True}}, "env.A"),
        (P.StartParams, {"argv": ["ls"], "env": ["A=1"]}, "env"),
        (P.StartParams, {"argv": ["ls"], "clear_env": "true"}, "clear_env"),
        (P.StartParams, {"argv": ["ls"], "clear_env": 1}, "clear_env"),
        (P.StartParams, {"argv": ["ls"], "cwd": 0}, "cwd"),
        (P.StartParams, {"argv": ["ls"], "name": 3}, "name"),
        (P.StartParams, {"argv": ["ls"], "binary": 1}, "binary"),
        (P.StartParams, {"argv": ["ls"], "binary": "yes"}, "binary"),
        (P.WriteParams, {"proc": 1, "data": b"x"}, "data"),
        (P.WriteParams, {"proc": 1, "data": 5}, "data"),
        (P.SignalParams, {"proc": 1, "signal": "TERM", "group": 0}, "group"),
        (P.SignalParams, {"proc": 1, "signal": "TERM", "group": "false"}, "group"),
        (P.RunParams, {"argv": ["ls"], "max_output": 1.0}, "max_output"),
        (P.RunParams, {"argv": ["ls"], "input": 5}, "input"),
    ],
)
def test_wrong_type_is_refused_and_named(model: type[P.Params], raw: dict[str, Any], where: str) -> None:
    assert field_named(invalid(model, raw)) == where


@pytest.mark.parametrize(
    ("model", "raw", "field"),
    [
        (P.StartParams, {"argv": ["ls"], "timeout": "5"}, "timeout"),
        (P.StartParams, {"argv": ["ls"], "timeout": True}, "timeout"),
        (P.StopParams, {"proc": 1, "grace": "1"}, "grace"),
        (P.WaitParams, {"proc": 1, "timeout": [1]}, "timeout"),
        (P.SignalParams, {"proc": 1, "signal": 15.0}, "signal"),
        (P.SignalParams, {"proc": 1, "signal": True}, "signal"),
        (P.SignalParams, {"proc": 1, "signal": None}, "signal"),
    ],
)
def test_wrong_type_in_a_union_names_just_the_field(model: type[P.Params], raw: dict[str, Any], field: str) -> None:
    # not pydantic's union-member tags (``timeout.int``)
    assert field_named(invalid(model, raw)) == field


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("stdin", "file", "'pipe' or 'null'"),
        ("stdin", "PIPE", "'pipe' or 'null'"),
        ("stderr", "stderr", "'pipe', 'stdout' or 'null'"),
        ("encoding", "utf-8", "'text' or 'base64'"),
        ("encoding", None, "'text' or 'base64'"),
        ("size_rule", "largest", "'latest' or 'smallest'"),
    ],
)
def test_enumerated_values(field: str, value: Any, allowed: str) -> None:
    message = invalid(P.StartParams, {"argv": ["ls"], field: value})
    assert message == f"Invalid params: {field}: must be {allowed}"


def test_binary_is_a_start_option_only() -> None:
    assert P.validate(P.StartParams, {"argv": ["ls"], "binary": True}).binary is True
    assert invalid(P.RunParams, {"argv": ["ls"], "binary": True}) == (
        "Invalid params: binary: is not a parameter of this method"
    )


def test_write_and_run_input_encoding_enumerated() -> None:
    assert field_named(invalid(P.WriteParams, {"proc": 1, "data": "", "encoding": "hex"})) == "encoding"
    assert field_named(invalid(P.RunParams, {"argv": ["ls"], "input_encoding": "hex"})) == "input_encoding"


# -- ranges -----------------------------------------------------------------------


def test_empty_argv_is_refused() -> None:
    assert field_named(invalid(P.StartParams, {"argv": []})) == "argv"
    assert field_named(invalid(P.RunParams, {"argv": []})) == "argv"


@pytest.mark.parametrize(
    ("model", "raw", "where"),
    [
        (P.StartParams, {"argv": ["ls\0"]}, "argv[0]"),
        (P.RunParams, {"argv": ["ls", "a\0b"]}, "argv[1]"),
        (P.StartParams, {"argv": ["ls"], "env": {"A": "x\0"}}, "env.A"),
        (P.StartParams, {"argv": ["ls"], "cwd": "/tmp\0/x"}, "cwd"),
        (P.LookpathParams, {"file": "sh\0"}, "file"),
    ],
)
def test_nul_bytes_in_strings_the_os_gets_are_refused(model: type[P.Params], raw: dict[str, Any], where: str) -> None:
    assert invalid(model, raw) == f"Invalid params: {where}: must not contain a NUL byte"


def test_nul_in_an_env_name_is_refused() -> None:
    message = invalid(P.StartParams, {"argv": ["ls"], "env": {"A\0": "x"}})
    assert top_field(message) == "env"
    assert message.endswith(": must not contain a NUL byte")


@pytest.mark.parametrize("name", ["", "A=B", "=A"])
def test_bad_env_names_are_refused(name: str) -> None:
    message = invalid(P.StartParams, {"argv": ["ls"], "env": {name: "x"}})
    assert top_field(message) == "env"
    assert message.endswith(f": bad variable name {name!r}")


def test_nul_is_allowed_where_it_is_data() -> None:
    assert P.validate(P.WriteParams, {"proc": 1, "data": "a\0b"}).data == "a\0b"
    assert P.validate(P.RunParams, {"argv": ["cat"], "input": "\0"}).input == "\0"
    assert P.validate(P.StartParams, {"argv": ["ls"], "name": "n\0"}).name == "n\0"


def test_env_names_may_be_unusual_but_valid() -> None:
    env = {"lower": "1", "WITH SPACE": "2", "UNICODÉ": "3", "_": None}
    assert P.validate(P.StartParams, {"argv": ["ls"], "env": env}).env == env


def test_argv_may_hold_empty_strings_after_the_first() -> None:
    assert P.validate(P.StartParams, {"argv": ["printf", ""]}).argv == ["printf", ""]


@pytest.mark.parametrize(
    ("model", "raw", "field"),
    [
        (P.ProcParams, {"proc": 0}, "proc"),
        (P.ProcParams, {"proc": -1}, "proc"),
        (P.FindParams, {"pid": 0}, "pid"),
        (P.FindParams, {"pid": -7}, "pid"),
        (P.LookpathParams, {"file": ""}, "file"),
        (P.StartParams, {"argv": ["ls"], "cwd": ""}, "cwd"),
        (P.StartParams, {"argv": ["ls"], "timeout": 0}, "timeout"),
        (P.StartParams, {"argv": ["ls"], "timeout": -0.5}, "timeout"),
        (P.StartParams, {"argv": ["ls"], "timeout": 10**9 + 1}, "timeout"),
        (P.StartParams, {"argv": ["ls"], "timeout": float("inf")}, "timeout"),
        (P.StartParams, {"argv": ["ls"], "timeout": float("nan")}, "timeout"),
        (P.StopParams, {"proc": 1, "grace": -1}, "grace"),
        (P.StopParams, {"proc": 1, "grace": 1e10}, "grace"),
        (P.WaitParams, {"proc": 1, "timeout": -0.001}, "timeout"),
        (P.RunParams, {"argv": ["ls"], "max_output": -1}, "max_output"),
        (P.RunParams, {"argv": ["ls"], "max_output": (1 << 40) + 1}, "max_output"),
    ],
)
def test_out_of_range_is_refused_and_named(model: type[P.Params], raw: dict[str, Any], field: str) -> None:
    assert field_named(invalid(model, raw)) == field


@pytest.mark.parametrize(
    ("model", "raw", "field", "expected"),
    [
        (P.StartParams, {"argv": ["ls"], "timeout": 10**9}, "timeout", 10**9),
        (P.StartParams, {"argv": ["ls"], "timeout": 0.001}, "timeout", 0.001),
        (P.StopParams, {"proc": 1, "grace": 0}, "grace", 0),
        (P.WaitParams, {"proc": 1, "timeout": 0}, "timeout", 0),
        (P.RunParams, {"argv": ["ls"], "max_output": 0}, "max_output", 0),
        (P.RunParams, {"argv": ["ls"], "max_output": 1 << 40}, "max_output", 1 << 40),
        (P.ProcParams, {"proc": 2**62}, "proc", 2**62),
    ],
)
def test_boundaries_are_accepted(model: type[P.Params], raw: dict[str, Any], field: str, expected: Any) -> None:
    value = getattr(P.validate(model, raw), field)
    assert value == expected
    assert type(value) is type(expected)


# -- signals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ("SIGTERM", signal.SIGTERM),
        ("TERM", signal.SIGTERM),
        ("sigterm", signal.SIGTERM),
        ("term", signal.SIGTERM),
        ("SigKill", signal.SIGKILL),
        ("HUP", signal.SIGHUP),
        ("INT", signal.SIGINT),
        ("usr1", signal.SIGUSR1),
        ("SIGIOT", signal.SIGABRT),  # an alias
        ("SIGRTMIN", signal.SIGRTMIN),
        (15, signal.SIGTERM),
        (9, signal.SIGKILL),
        (1, signal.SIGHUP),
        (int(signal.SIGRTMIN) + 1, int(signal.SIGRTMIN) + 1),
        (int(signal.SIGRTMAX), int(signal.SIGRTMAX)),
    ],
)
def test_signal_number_accepts_names_and_numbers(value: str | int, number: int) -> None:
    assert P.signal_number(value) == number
    assert type(P.signal_number(value)) is int
    assert P.validate(P.SignalParams, {"proc": 1, "signal": value}).signal == number
    assert P.validate(P.StopParams, {"proc": 1, "signal": value}).signal == number


@pytest.mark.parametrize("member", list(signal.Signals), ids=lambda member: member.name)
def test_every_signal_name_in_every_spelling(member: signal.Signals) -> None:
    short = member.name.removeprefix("SIG")
    for spelling in (member.name, short, member.name.lower(), short.lower()):
        assert P.signal_number(spelling) == member.value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("NOPE", "unknown signal name 'NOPE'"),
        ("", "unknown signal name ''"),
        ("SIG", "unknown signal name 'SIG'"),
        ("SIG_DFL", "unknown signal name 'SIG_DFL'"),
        ("SIG_IGN", "unknown signal name 'SIG_IGN'"),
        ("NSIG", "unknown signal name 'NSIG'"),
        (" TERM", "unknown signal name ' TERM'"),
        ("TERM ", "unknown signal name 'TERM '"),
        ("15", "unknown signal name '15'"),
        ("name", "unknown signal name 'name'"),
        ("__class__", "unknown signal name '__class__'"),
        (0, "unknown signal number 0"),
        (-9, "unknown signal number -9"),
        (signal.NSIG, f"unknown signal number {signal.NSIG}"),
        (1000, "unknown signal number 1000"),
    ],
)
def test_unknown_signal(value: str | int, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(") + "$"):
        P.signal_number(value)
    assert invalid(P.SignalParams, {"proc": 1, "signal": value}) == f"Invalid params: signal: {message}"
    assert invalid(P.StopParams, {"proc": 1, "signal": value}) == f"Invalid params: signal: {message}"


@given(st.integers())
def test_signal_numbers_are_exactly_the_valid_ones(number: int) -> None:
    valid = number != 0 and number in signal.valid_signals()
    if valid:
        assert P.signal_number(number) == number
    else:
        with pytest.raises(ValueError, match="unknown signal number"):
            P.signal_number(number)


@given(st.text(max_size=12))
def test_signal_names_never_raise_anything_but_value_error(name: str) -> None:
    try:
        number = P.signal_number(name)
    except ValueError as error:
        assert "unknown signal name" in str(error)
    else:
        assert number in signal.valid_signals()
        assert signal.Signals(number).name in {name.upper(), "SIG" + name.upper()} or name.upper().removeprefix(
            "SIG"
        ) in {"IOT", "CLD", "POLL"}


# -- decode_data ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [("", b""), ("hi\n", b"hi\n"), ("é😀", "é😀".encode()), ("\x00", b"\x00")],
)
def test_decode_text(data: str, expected: bytes) -> None:
    assert P.decode_data(data, "text") == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [("", b""), ("aGk=", b"hi"), ("/w==", b"\xff"), ("AAEC", b"\x00\x01\x02"), ("+/+/", b"\xfb\xff\xbf")],
)
def test_decode_base64(data: str, expected: bytes) -> None:
    assert P.decode_data(data, "base64") == expected


@pytest.mark.parametrize("data", ["aGk", "a", "!!!!", "aGk=\n", "aG k=", "-_-_", "aGk=aGk", "é"])
def test_bad_base64_is_invalid_params_naming_the_field(data: str) -> None:
    with pytest.raises(RpcError) as caught:
        P.decode_data(data, "base64")
    assert caught.value.code == ErrorCode.INVALID_PARAMS
    assert caught.value.message == "Invalid params: data: not valid base64"
    with pytest.raises(RpcError) as caught:
        P.decode_data(data, "base64", "input")
    assert caught.value.message == "Invalid params: input: not valid base64"


@given(st.binary(max_size=200))
def test_base64_round_trip(data: bytes) -> None:
    assert P.decode_data(base64.b64encode(data).decode(), "base64") == data


@given(st.text(max_size=100))
def test_text_round_trip(text: str) -> None:
    assert P.decode_data(text, "text").decode("utf-8") == text


# -- the error message ------------------------------------------------------------


def test_only_the_first_problem_is_reported() -> None:
    message = invalid(P.StartParams, {"argv": [], "stdin": "file", "bogus": 1})
    assert message.count("Invalid params") == 1
    assert field_named(message) == "argv"


def test_value_error_prefix_is_removed() -> None:
    message = invalid(P.SignalParams, {"proc": 1, "signal": "BOGUS"})
    assert "Value error" not in message
    assert message == "Invalid params: signal: unknown signal name 'BOGUS'"


@given(
    st.dictionaries(
        st.sampled_from(["argv", "env", "cwd", "timeout", "stdin", "name", "x"]),
        st.none() | st.integers() | st.text(max_size=5) | st.lists(st.integers() | st.text(max_size=3), max_size=3),
        max_size=4,
    )
)
def test_start_params_either_validate_or_raise_invalid_params(raw: dict[str, Any]) -> None:
    try:
        params = P.validate(P.StartParams, raw)
    except RpcError as error:
        assert error.code == ErrorCode.INVALID_PARAMS
        assert top_field(error.message) in raw or field_named(error.message) == "argv"
    else:
        assert params.argv == raw["argv"]
        assert all(isinstance(arg, str) for arg in params.argv)


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ({"argv": []}, "argv: must not be empty"),
        ({"argv": "ls"}, "argv: must be an array"),
        ({"argv": ["ls"], "timeout": -1}, "timeout: must be greater than 0"),
        ({"argv": ["ls"], "cwd": 7}, "cwd: must be a string"),
    ],
)
def test_problems_are_said_in_plain_words(raw: dict[str, Any], said: str) -> None:
    """Not pydantic's wording ("List should have at least 1 item after validation, not 0")."""
    assert invalid(P.StartParams, raw) == f"Invalid params: {said}"
