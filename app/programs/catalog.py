"""Which program a URL names, and everything about it the endpoint needs.

A :class:`Program` is a ``[programs.NAME]`` table with ``[program_defaults]``
and the built-in defaults filled in, or an executable of ``PROGRAMS_DIR``
with the defaults alone.  Lookup is by path: ``/programs/NAME[/MORE]``, the
rest (``/MORE``) being the program's ``PATH_INFO`` as websocketd gives it;
``/`` is ``PROGRAMS_ROOT``.  No I/O but a ``stat`` of a directory entry.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from config.programs import DEFAULT_PASSENV, PLACEHOLDER, PROGRAM_NAME, WEBSOCKETD_STOP, ProgramSettings, StopStep
from config.settings import Settings

PREFIX = "/programs/"

BUILT_IN_DEFAULTS: dict[str, Any] = {
    "cwd": None,
    "env": {},
    "passenv": list(DEFAULT_PASSENV),
    "mode": "text",
    "stderr": "log",
    "pty": False,
    "stop": list(WEBSOCKETD_STOP),
    "args": {},
    "public": False,
    "roles": ["admin"],
    "tokens": [],
    "max_connections": 0,
    "timeout": None,
    "rlimits": {},
}


class BadArguments(ValueError):
    """The query string's arguments do not fit the program's ``args`` table."""


@dataclass(frozen=True)
class Program:
    """One program endpoint, its settings complete."""

    name: str
    argv: tuple[str, ...]
    cwd: str | None
    env: Mapping[str, str]
    passenv: tuple[str, ...]
    mode: str
    stderr: str
    pty: bool
    stop: tuple[StopStep, ...]
    args: Mapping[str, Any]
    public: bool
    roles: frozenset[str]
    tokens: frozenset[str]
    max_connections: int
    timeout: float | None
    rlimits: Mapping[str, int] = field(default_factory=dict)

    @property
    def binary(self) -> bool:
        return self.mode == "binary"

    def allows(self, name: str, role: str) -> bool:
        """May the identity ``name`` (of ``role``) connect?"""
        return role in self.roles or name in self.tokens

    def argv_for(self, query: Mapping[str, str]) -> list[str]:
        """The argv with each ``{name}`` replaced by the query's validated value (never a shell)."""
        values: dict[str, str] = {}
        for name, argument in self.args.items():
            value = query.get(name, argument.default)
            if value is None:
                raise BadArguments(f"argument {name!r} is required")
            if re.fullmatch(argument.pattern, value) is None:
                raise BadArguments(f"argument {name!r} does not match {argument.pattern!r}")
            values[name] = value
        return [PLACEHOLDER.sub(lambda match: values[match.group(1)], part) for part in self.argv]


def build(name: str, argv: list[str], *layers: ProgramSettings) -> Program:
    """A program from the built-in defaults, then each layer's keys that are set."""
    merged = dict(BUILT_IN_DEFAULTS)
    for layer in layers:
        merged.update(layer.model_dump(exclude_none=True, exclude={"argv"}, round_trip=True))
    merged["stop"] = [step if isinstance(step, StopStep) else StopStep(**step) for step in merged["stop"]]
    return Program(
        name=name,
        argv=tuple(argv),
        cwd=merged["cwd"],
        env=dict(merged["env"]),
        passenv=tuple(merged["passenv"]),
        mode=merged["mode"],
        stderr=merged["stderr"],
        pty=merged["pty"],
        stop=tuple(merged["stop"]),
        args=dict(layers[-1].args or {}) if layers else {},  # a program's own, never inherited
        public=merged["public"],
        roles=frozenset(merged["roles"]),
        tokens=frozenset(merged["tokens"]),
        max_connections=merged["max_connections"],
        timeout=merged["timeout"],
        rlimits=dict(merged["rlimits"]),
    )


class Catalog:
    """The programs of one server's settings, looked up by request path."""

    def __init__(self, settings: Settings) -> None:
        self._defaults = settings.PROGRAM_DEFAULTS
        self._declared = {
            name: build(name, table.argv or [], self._defaults, table) for name, table in settings.PROGRAMS.items()
        }
        self._directory = settings.PROGRAMS_DIR
        self._root = settings.PROGRAMS_ROOT
        self._found: dict[str, Program] = {}  # PROGRAMS_DIR's, built once: their settings never change

    def __bool__(self) -> bool:
        return bool(self._declared or self._directory)

    def find(self, path: str) -> tuple[Program, str, str] | None:
        """The program a path names, its ``SCRIPT_NAME`` and its ``PATH_INFO``; None if none."""
        if path in ("/", "") and self._root:
            return self._declared[self._root], "/", "/"  # websocketd's single-program form: the path is PATH_INFO
        if not path.startswith(PREFIX):
            return None
        name, slash, rest = path.removeprefix(PREFIX).partition("/")
        program = self._declared.get(name) or self._from_directory(name)
        if program is None:
            return None
        return program, PREFIX + name, slash + rest

    def names(self) -> list[str]:
        """Every program served, declared and found in ``PROGRAMS_DIR``."""
        found = set(self._declared)
        if self._directory:
            with os.scandir(self._directory) as entries:
                found.update(entry.name for entry in entries if _is_executable(entry.path))
        return sorted(name for name in found if PROGRAM_NAME.fullmatch(name))

    def _from_directory(self, name: str) -> Program | None:
        """An executable file of ``PROGRAMS_DIR`` (not a dot-file, not in a subdirectory)."""
        if not self._directory or not PROGRAM_NAME.fullmatch(name) or name.startswith("."):
            return None
        path = os.path.join(self._directory, name)
        if not _is_executable(path):
            return None
        if name not in self._found:
            self._found[name] = build(name, [path], self._defaults)
        return self._found[name]


def _is_executable(path: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) and os.access(path, os.X_OK)
