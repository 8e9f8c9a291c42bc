"""What the server answers, as Python objects: exit statuses, ``run`` results,
process listings and ``attach`` answers.  Shared by the sync and asyncio clients."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from procwire_client.errors import OutputTruncated

# The server runs on Linux: exit statuses name Linux signals, so their numbers
# (for 128+N) are Linux's, whatever the client's own platform numbers them.
LINUX_SIGNALS = {
    "SIGHUP": 1,
    "SIGINT": 2,
    "SIGQUIT": 3,
    "SIGILL": 4,
    "SIGTRAP": 5,
    "SIGABRT": 6,
    "SIGIOT": 6,
    "SIGBUS": 7,
    "SIGFPE": 8,
    "SIGKILL": 9,
    "SIGUSR1": 10,
    "SIGSEGV": 11,
    "SIGUSR2": 12,
    "SIGPIPE": 13,
    "SIGALRM": 14,
    "SIGTERM": 15,
    "SIGSTKFLT": 16,
    "SIGCHLD": 17,
    "SIGCONT": 18,
    "SIGSTOP": 19,
    "SIGTSTP": 20,
    "SIGTTIN": 21,
    "SIGTTOU": 22,
    "SIGURG": 23,
    "SIGXCPU": 24,
    "SIGXFSZ": 25,
    "SIGVTALRM": 26,
    "SIGPROF": 27,
    "SIGWINCH": 28,
    "SIGIO": 29,
    "SIGPOLL": 29,
    "SIGPWR": 30,
    "SIGSYS": 31,
    "SIGRTMIN": 34,
    "SIGRTMAX": 64,
}


def signal_number(name: str | None) -> int | None:
    """The (Linux) number of a signal name as the server reports it: ``"SIGKILL"``, ``"SIG35"``."""
    if name is None:
        return None
    if name in LINUX_SIGNALS:
        return LINUX_SIGNALS[name]
    match = re.fullmatch(r"SIG(\d+)", name)
    return int(match.group(1)) if match else None


def signal_param(sig: Any) -> str | int:
    """A signal as the protocol takes it: a name (portable between hosts) or a number."""
    name = getattr(sig, "name", None)  # signal.Signals members
    if isinstance(name, str):
        return name
    if isinstance(sig, bool) or not isinstance(sig, str | int):
        raise TypeError(f"a signal is a name or a number, not {sig!r}")
    return sig


def _known_fields(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    names = {item.name for item in fields(cls)}
    return {key: value for key, value in values.items() if key in names}


# -- results ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExitStatus:
    """How a process ended (the ``exit`` notification, ``wait``, ``stop``)."""

    proc: int
    pid: int | None = None
    code: int | None = None
    signal: str | None = None
    core_dumped: bool = False
    timed_out: bool = False
    duration: float | None = None
    output_incomplete: bool = False
    rusage: dict[str, Any] | None = field(default_factory=dict)  # None when lost
    lost: bool = False  # cluster mode: the node running it died, nobody saw the end
    node: str | None = None  # the node that was lost

    @classmethod
    def from_json(cls, status: Mapping[str, Any]) -> ExitStatus:
        return cls(**_known_fields(ExitStatus, status))

    @property
    def signal_number(self) -> int | None:
        return signal_number(self.signal)

    @property
    def exit_code(self) -> int:
        """Shell style: the code, or 128+N when signal N killed the process."""
        if self.code is not None:
            return self.code
        number = self.signal_number
        return 128 + number if number is not None else 255

    @property
    def returncode(self) -> int:
        """:mod:`subprocess` style: the code, or -N when signal N killed the process."""
        if self.code is not None:
            return self.code
        number = self.signal_number
        return -number if number is not None else -255

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass(frozen=True)
class Result(ExitStatus):
    """What :meth:`Client.run` returns: the exit status and the collected output."""

    stdout: bytes = b""
    stderr: bytes = b""
    truncated: dict[str, bool] = field(default_factory=lambda: {"stdout": False, "stderr": False})

    @classmethod
    def from_json(cls, result: Mapping[str, Any]) -> Result:
        values = _known_fields(Result, result)
        for stream in ("stdout", "stderr"):
            values[stream] = decode_data(result.get(stream) or "", result.get("encoding"))
        return cls(**values)


@dataclass(frozen=True)
class ProcessInfo:
    """One item of :meth:`Client.list`; members this client does not know are in ``extra``."""

    proc: int
    pid: int | None = None
    pgid: int | None = None
    name: str | None = None
    argv: list[str] = field(default_factory=list)
    cwd: str | None = None
    state: str = "running"
    started_at: float | None = None
    exit: ExitStatus | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, info: Mapping[str, Any]) -> ProcessInfo:
        return _with_exit_and_extra(cls, info)


@dataclass(frozen=True)
class Share:
    """The answer to ``share``: a link to one process, until ``expires_at`` (Unix time)."""

    id: str
    token: str
    url: str
    mode: str
    expires_at: float

    @classmethod
    def from_json(cls, answer: Mapping[str, Any]) -> Share:
        return cls(**_known_fields(cls, answer))


@dataclass(frozen=True)
class Attachment:
    """The answer to ``attach``: where the streams stand and what the replay lost."""

    proc: int
    offsets: dict[str, int] = field(default_factory=dict)
    truncated: bool = False
    state: str = "running"
    exit: ExitStatus | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, answer: Mapping[str, Any]) -> Attachment:
        return _with_exit_and_extra(cls, answer)


def _with_exit_and_extra(cls: Any, values: Mapping[str, Any]) -> Any:
    """``cls`` from an answer: known fields, ``exit`` as an ExitStatus, the rest in ``extra``."""
    known = _known_fields(cls, values)
    known.pop("extra", None)
    if values.get("exit") is not None:
        known["exit"] = ExitStatus.from_json(values["exit"])
    extra = {key: value for key, value in values.items() if key not in known}
    return cls(**known, extra=extra)


def decode_data(data: str, encoding: str | None) -> bytes:
    """The bytes of a ``data`` member: base64 when ``encoding`` says so, else UTF-8 text."""
    return base64.b64decode(data) if encoding == "base64" else data.encode("utf-8")


class OutputCollector:
    """Keeps at most ``limit`` bytes per stream of a process's output, as ``run`` does."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = {"stdout": bytearray(), "stderr": bytearray()}
        self.truncated = {"stdout": False, "stderr": False}

    def add(self, stream: str, data: bytes) -> None:
        kept = self.kept.setdefault(stream, bytearray())
        room = self.limit - len(kept)
        if len(data) > room:
            self.truncated[stream] = True
        kept += data[: max(room, 0)]

    def result(self, status: ExitStatus) -> Result:
        return Result(
            **vars(status),
            stdout=bytes(self.kept["stdout"]),
            stderr=bytes(self.kept["stderr"]),
            truncated=dict(self.truncated),
        )


def checked_run_result(result: Result, on_overflow: str) -> Result:
    """``result``, unless output was cut and the caller did not accept it (``on_overflow="raise"``)."""
    cut = [stream for stream, truncated in result.truncated.items() if truncated]
    if cut and on_overflow != "truncate":
        raise OutputTruncated(
            f"process {result.proc}: {' and '.join(cut)} exceeded max_output; the partial result is in .result "
            "(pass on_overflow='truncate' to get it returned)",
            result,
        )
    return result
