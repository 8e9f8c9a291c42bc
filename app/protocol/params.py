"""The params each method accepts, validated strictly (no type coercion).

A request's params are checked here before its method runs; the first
problem becomes an INVALID_PARAMS answer naming the field.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import signal as signal_module
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from app.errors import ErrorCode, RpcError

ProcId = Annotated[StrictInt, Field(gt=0)]
Seconds = Annotated[StrictInt | StrictFloat, Field(gt=0, le=10**9)]
GraceSeconds = Annotated[StrictInt | StrictFloat, Field(ge=0, le=10**9)]
MAX_COMMAND_CHARS = 4096  # a command line shown in process info


def no_nul(value: str) -> str:
    """The OS takes C strings: a NUL byte would silently cut them."""
    if "\0" in value:
        raise ValueError("must not contain a NUL byte")
    return value


def env_name(value: str) -> str:
    if not value or "=" in value:
        raise ValueError(f"bad variable name {value!r}")
    return no_nul(value)


OsStr = Annotated[StrictStr, AfterValidator(no_nul)]
NonEmptyStr = Annotated[StrictStr, Field(min_length=1), AfterValidator(no_nul)]
EnvName = Annotated[StrictStr, AfterValidator(env_name)]


def signal_number(value: str | int) -> int:
    """Accept ``"SIGTERM"``, ``"TERM"``, ``"sigterm"`` or ``15``."""
    if isinstance(value, int):
        if value in signal_module.valid_signals() and value != 0:
            return value
        raise ValueError(f"unknown signal number {value}")
    name = value.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    member = getattr(signal_module.Signals, name, None)
    if member is None:
        raise ValueError(f"unknown signal name {value!r}")
    return int(member)


if TYPE_CHECKING:
    Signal = int  # what validation leaves
else:
    Signal = Annotated[StrictStr | StrictInt, AfterValidator(signal_number)]


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class NoParams(Params):
    pass


class LookpathParams(Params):
    file: NonEmptyStr


class RecordOptions(Params):
    input: StrictBool = False  # stdin too (a terminal's keys)


class SpawnParams(Params):
    """What ``start`` and ``run`` share."""

    argv: Annotated[list[OsStr], Field(min_length=1)]
    env: dict[EnvName, OsStr | None] = Field(default_factory=dict)
    clear_env: StrictBool = False
    cwd: NonEmptyStr | None = None
    stdin: Literal["pipe", "null"] = "pipe"
    stderr: Literal["pipe", "stdout", "null"] = "pipe"
    timeout: Seconds | None = None
    encoding: Literal["text", "base64"] = "text"
    name: StrictStr | None = None
    command: Annotated[StrictStr, Field(min_length=1, max_length=MAX_COMMAND_CHARS)] | None = None
    record: StrictBool | RecordOptions | None = None  # app.recording; a policy may require it anyway


class PtySize(Params):
    rows: Annotated[StrictInt, Field(ge=1, le=10_000)]
    cols: Annotated[StrictInt, Field(ge=1, le=10_000)]


class StartParams(SpawnParams):
    binary: StrictBool = False
    pty: PtySize | None = None
    on_disconnect: Literal["kill", "keep"] = "kill"
    size_rule: Literal["latest", "smallest"] = "latest"  # the terminal's size among its controllers
    buffer: Annotated[StrictInt, Field(ge=0)] | None = None


class RunParams(SpawnParams):
    input: StrictStr | None = None
    input_encoding: Literal["text", "base64"] = "text"
    max_output: Annotated[StrictInt, Field(ge=0, le=1 << 40)] = 16 * 1024 * 1024


class ProcParams(Params):
    proc: ProcId


class WriteParams(ProcParams):
    data: StrictStr
    encoding: Literal["text", "base64"] = "text"


class SignalParams(ProcParams):
    signal: Signal
    group: StrictBool = True


class StopParams(ProcParams):
    signal: Signal = int(signal_module.SIGTERM)
    grace: GraceSeconds | None = None


class WaitParams(ProcParams):
    timeout: GraceSeconds | None = None


class ResizeParams(ProcParams, PtySize):
    pass


class StreamOffsets(Params):
    stdout: Annotated[StrictInt, Field(ge=0)] = 0
    stderr: Annotated[StrictInt, Field(ge=0)] = 0


class AttachParams(ProcParams):
    offset: Annotated[StrictInt, Field(ge=0)] | StreamOffsets | None = None
    binary: StrictBool | None = None  # None: as the process's starter chose
    encoding: Literal["text", "base64"] | None = None
    snapshot: StrictBool = False
    mode: Literal["view", "control"] | None = None  # None: control, or a share link's mode (app/protocol/access.py)

    def offsets(self) -> dict[str, int]:
        """A lone number is stdout's offset."""
        if isinstance(self.offset, int):
            return {"stdout": self.offset}
        return self.offset.model_dump() if self.offset else {}


class FindParams(Params):
    pid: Annotated[StrictInt, Field(gt=0)]


def validate(model: type[Params], raw: dict[str, Any]) -> Any:
    """Validate ``raw`` against ``model`` or raise INVALID_PARAMS."""
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        problem = error.errors()[0]
        where = _field_path(problem["loc"]) or "params"
        raise RpcError(ErrorCode.INVALID_PARAMS, f"Invalid params: {where}: {plain_words(problem)}") from None


# pydantic's wording of the commonest problems, said plainly (the others: "Input should be" -> "must be").
PLAIN = {
    "missing": "is required",
    "extra_forbidden": "is not a parameter of this method",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "list_type": "must be an array",
    "dict_type": "must be an object",
}


def plain_words(problem: Mapping[str, Any]) -> str:
    """One validation problem as a client should read it: ``argv: must not be empty``, not
    ``List should have at least 1 item after validation, not 0``."""
    kind, context = problem["type"], problem.get("ctx") or {}
    if kind in PLAIN:
        return PLAIN[kind]
    if kind == "too_short" and context.get("min_length") == 1:
        return "must not be empty"
    if kind in ("too_short", "too_long"):
        bound = context["min_length"] if kind == "too_short" else context["max_length"]
        items = "characters" if isinstance(problem.get("input"), str) else "items"
        return f"must have {'at least' if kind == 'too_short' else 'at most'} {bound} {items}"
    message = str(problem["msg"]).removeprefix("Value error, ")
    return message.replace("Input should be ", "must be ", 1)


def _field_path(loc: tuple[int | str, ...]) -> str:
    """``argv[1]``, ``env.HOME``; without pydantic's union-member tags (``timeout.int``)."""
    if not loc:
        return ""
    path = str(loc[0])
    for previous, part in itertools.pairwise(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        elif previous == "env":
            path += f".{part}"
        else:
            break
    return path


def decode_data(data: str, encoding: str, field_name: str = "data") -> bytes:
    """Bytes of a ``data`` string in the given encoding, or INVALID_PARAMS."""
    if encoding == "text":
        return data.encode("utf-8")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RpcError(ErrorCode.INVALID_PARAMS, f"Invalid params: {field_name}: not valid base64") from None
