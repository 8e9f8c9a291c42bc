"""The settings of program endpoints: websocketd's one-WebSocket-per-program model.

A ``[programs.NAME]`` table declares one program, served at ``/programs/NAME``;
``PROGRAMS_DIR`` serves every executable of a directory the same way (like
``websocketd --dir``), with the ``[program_defaults]`` table's settings.  A key
a ``[programs.NAME]`` table leaves out is taken from ``[program_defaults]``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

PROGRAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
ARGUMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")
SIGNAL_NAMES = ("HUP", "INT", "QUIT", "USR1", "USR2", "TERM", "KILL")
DEFAULT_PASSENV = ("PATH", "LD_LIBRARY_PATH")


def _pattern(value: str) -> str:
    try:
        re.compile(value)
    except re.error as error:
        raise ValueError(f"not a regular expression: {error}") from None
    return value


class ArgumentSettings(BaseModel):
    """One query-string argument a program accepts: ``{name}`` in its argv takes its value."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    pattern: Annotated[str, AfterValidator(_pattern)]  # the whole value must match
    default: str | None = None  # None: the argument is required


class StopStep(BaseModel):
    """Send ``signal`` to the program's process group ``after`` seconds from the client's close."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    signal: Literal[SIGNAL_NAMES]  # type: ignore[valid-type]
    after: float = Field(ge=0, le=3600)


# websocketd's escalation (process_endpoint.go): stdin closed, then INT at 0.1 s, TERM at 0.35 s, KILL at 0.85 s.
WEBSOCKETD_STOP = (
    StopStep(signal="INT", after=0.1),
    StopStep(signal="TERM", after=0.35),
    StopStep(signal="KILL", after=0.85),
)


def stop_sequence(close_ms: float) -> tuple[StopStep, ...]:
    """websocketd's ``--closems``: each of its three waits is longer by ``close_ms``."""
    extra = close_ms / 1000
    return tuple(
        StopStep(signal=step.signal, after=round(step.after + extra * (index + 1), 6))
        for index, step in enumerate(WEBSOCKETD_STOP)
    )


class ProgramSettings(BaseModel):
    """A ``[programs.NAME]`` table, or ``[program_defaults]`` (where ``argv`` is not set)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    argv: list[str] | None = Field(default=None, min_length=1)
    cwd: str | None = None
    env: dict[str, str] | None = None  # set for the program, after passenv
    passenv: list[str] | None = None  # the server's variables it inherits
    mode: Literal["text", "binary"] | None = None
    stderr: Literal["log", "merge", "tagged"] | None = None
    pty: bool | None = None
    stop: list[StopStep] | None = None  # must end with KILL
    args: dict[str, ArgumentSettings] | None = None
    public: bool | None = None  # no token needed: for pages websocketd served without one
    roles: list[Literal["admin", "user"]] | None = None
    tokens: list[str] | None = None  # token names allowed besides the roles
    max_connections: int | None = Field(default=None, ge=0, le=10**6)  # 0: unbounded
    timeout: float | None = Field(default=None, gt=0, le=10**9)
    rlimits: dict[Literal["cpu", "as", "nofile", "nproc"], Annotated[int, Field(ge=1, le=2**62)]] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ProgramSettings:
        if self.stop is not None:
            if not self.stop or self.stop[-1].signal != "KILL":
                raise ValueError("stop: the last step must send KILL, so that the program always ends")
            if any(later.after < earlier.after for earlier, later in zip(self.stop, self.stop[1:], strict=False)):
                raise ValueError("stop: each step's 'after' must be at least the one before it")
        for name in self.args or {}:
            if not ARGUMENT_NAME.fullmatch(name):
                raise ValueError(f"args: {name!r} is not an argument name ([A-Za-z_][A-Za-z0-9_]*)")
        if self.argv is not None:
            used = {match for part in self.argv for match in PLACEHOLDER.findall(part)}
            unknown = sorted(used - set(self.args or {}))
            if unknown:
                raise ValueError(f"argv: {{{unknown[0]}}} is not declared in args")
        return self


class ProgramDefaults(ProgramSettings):
    """``[program_defaults]``: every key but ``argv`` and ``args``."""

    @model_validator(mode="after")
    def _no_command(self) -> ProgramDefaults:
        if self.argv is not None or self.args is not None:
            raise ValueError("argv and args belong in a [programs.NAME] table")
        return self


def _program_names(value: dict[str, ProgramSettings]) -> dict[str, ProgramSettings]:
    for name, program in value.items():
        if not PROGRAM_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a program name ([A-Za-z0-9][A-Za-z0-9_.-]*)")
        if program.argv is None:
            raise ValueError(f"{name}: argv is required")
    return value


ProgramTable = Annotated[dict[str, ProgramSettings], AfterValidator(_program_names)]
