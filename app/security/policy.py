"""Who may run what: one identity's policy, and the check of one start.

A :class:`Policy` is the role's defaults, then the ``[policies.<role>]``
table, then the token's own ``policy`` table, each key taken from the last
place that sets it (deny lists add up instead).  :func:`check_start` decides
on one ``start`` or ``run``: it returns a :class:`Grant` (the timeout and the
limits to launch with) or raises :class:`Refused` naming the rule.

No I/O here but resolving symlinks (``os.path.realpath``): no network, no
registry, no process, so it is unit-tested on its own.

Executables are matched by absolute path against globs where ``*`` and
``?`` stay inside one path component and ``**`` crosses them.  The path is
compared under two names: as resolved (symlinked directories resolved, the
file's own name kept: ``/tmp/sh`` linking to busybox is still ``/tmp/sh``)
and as its real path (every symlink resolved).  Both must be allowed and
neither denied.  A pattern without wildcards stands for its real path too, so
``/usr/bin/python3`` allows what it links to, and denying ``/usr/bin/sh``
denies ``dash`` under any name.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from app.errors import ErrorCode
from config.settings import PolicySettings

ADMIN: Final = "admin"
USER: Final = "user"
WILDCARDS = frozenset("*?")

# No policy written: admins may do everything, users nothing.
ANYWHERE = "/**"  # the allow pattern that matches every absolute path
ROLE_DEFAULTS: dict[str, dict[str, Any]] = {
    ADMIN: {
        "allow": [ANYWHERE],
        "cwd_roots": ["/"],
        "env": ["*"],
        "clear_env": True,
        "pty": True,
        "keep": True,
    },
    USER: {
        "allow": [],
        "cwd_roots": [],
        "env": [],
        "clear_env": False,
        "pty": False,
        "keep": False,
    },
}
INHERITED_KEYS = (
    "allow",
    "cwd_roots",
    "env",
    "clear_env",
    "pty",
    "keep",
    "max_procs",
    "max_procs_total",
    "default_timeout",
    "max_timeout",
    "rlimits",
    "user",
    "group",
    "record",
    "record_input",
)


class Refused(Exception):
    """A start the policy does not allow; ``message`` names the rule and where it is set."""

    def __init__(self, rule: str, message: str, code: ErrorCode = ErrorCode.PERMISSION_DENIED) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Grant:
    """What an allowed start is launched with."""

    timeout: float | None
    rlimits: dict[str, int]
    user: str | None
    group: str | None
    record: bool = False  # the policy requires a recording (app.recording)
    record_input: bool = False  # ... of the input too


@dataclass(frozen=True)
class StartRequest:
    """One ``start`` or ``run``, after ``lookpath``."""

    executable: str  # as lookpath resolved it; relative ones are relative to cwd
    cwd: str  # the child's working directory: the param, or the server's
    env: Mapping[str, str | None] = field(default_factory=dict)  # what the client sets or unsets
    clear_env: bool = False
    pty: bool = False
    keep: bool = False
    timeout: float | None = None


@dataclass(frozen=True, eq=False)
class Policy:
    """The effective rules of one identity; ``sources`` says where each key was set."""

    role: str
    allow: tuple[str, ...] = ()
    deny: tuple[tuple[str, str], ...] = ()  # (pattern, where it is set)
    cwd_roots: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    clear_env: bool = False
    pty: bool = False
    keep: bool = False
    max_procs: int | None = None
    max_procs_total: int | None = None
    default_timeout: float | None = None
    max_timeout: float | None = None
    # Resource limits for the launcher, by prlimit(1) name (cpu, as, nofile, nproc).
    rlimits: dict[str, int] = field(default_factory=dict)
    user: str | None = None
    group: str | None = None
    record: bool = False
    record_input: bool = False
    sources: dict[str, str] = field(default_factory=dict)
    written: bool = False  # a role or token table says something: not the role's defaults alone

    @classmethod
    def build(
        cls,
        role: str,
        role_table: PolicySettings | None = None,
        token_table: PolicySettings | None = None,
        token_name: str = "",
    ) -> Policy:
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        layers = [
            (ROLE_DEFAULTS[role], f"role {role} (by default)"),
            (_written(role_table), f"role {role}"),
            (_written(token_table), f"token {token_name}"),
        ]
        for table, source in layers:
            for key in INHERITED_KEYS:
                if table.get(key) is not None:
                    values[key] = table[key]
                    sources[key] = source
        deny = tuple((pattern, source) for table, source in layers[1:] for pattern in (table.get("deny") or []))
        for key in ("allow", "cwd_roots", "env"):
            values[key] = tuple(values.get(key, ()))
        values["rlimits"] = dict(values.get("rlimits") or {})
        written = any(table for table, _source in layers[1:])
        return cls(role=role, deny=deny, sources=sources, written=written, **values)

    def source(self, key: str) -> str:
        return self.sources.get(key, f"role {self.role} (by default)")


def _written(table: PolicySettings | None) -> dict[str, Any]:
    return {} if table is None else table.model_dump(exclude_none=True)


def check_start(policy: Policy, request: StartRequest, running_own: int = 0, running_total: int = 0) -> Grant:
    """Allow ``request`` (and say how to launch it) or raise :class:`Refused`.

    ``running_own`` counts the processes this token runs now, ``running_total``
    those of every token, both in this worker.
    """
    _check_written(policy)
    _check_switches(policy, request)
    _check_environment(policy, request)
    _check_cwd(policy, request.cwd)
    _check_executable(policy, request)
    timeout = _timeout(policy, request.timeout)
    if policy.max_procs is not None and running_own >= policy.max_procs:
        raise Refused(
            "max_procs",
            f"policy: this token already runs {running_own} processes, the max_procs of {policy.source('max_procs')}",
            ErrorCode.LIMIT_EXCEEDED,
        )
    if policy.max_procs_total is not None and running_total >= policy.max_procs_total:
        raise Refused(
            "max_procs_total",
            f"policy: the server already runs {running_total} processes, "
            f"the max_procs_total of {policy.source('max_procs_total')}",
            ErrorCode.LIMIT_EXCEEDED,
        )
    record = policy.record or policy.record_input
    return Grant(timeout, dict(policy.rlimits), policy.user, policy.group, record, policy.record_input)


def _check_written(policy: Policy) -> None:
    """A role that may run nothing because no policy was written for it: say
    that, rather than the first rule its empty defaults fail."""
    if not policy.written and not policy.allow:
        raise Refused(
            "policy",
            f"policy: role {policy.role} has no policy, so nothing may be started with this token; "
            f"the server's operator adds a [policies.{policy.role}] table (allow, cwd_roots) to its TOML file "
            "(PROCWIRE_CONFIG): see docs/security.md#policy",
        )


def _check_switches(policy: Policy, request: StartRequest) -> None:
    for key, asked, what in (
        ("pty", request.pty, "a pty"),
        ("keep", request.keep, 'on_disconnect: "keep"'),
        ("clear_env", request.clear_env, "clear_env"),
    ):
        if asked and not getattr(policy, key):
            raise Refused(key, f"policy: {what} is not allowed for {policy.source(key)}")


def _check_environment(policy: Policy, request: StartRequest) -> None:
    for name in request.env:
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in policy.env):
            raise Refused(
                "env", f"policy: environment variable {name} is not in the env allow list of {policy.source('env')}"
            )


def _check_cwd(policy: Policy, cwd: str) -> None:
    if "/" in policy.cwd_roots:
        return  # everything is inside /: no need to resolve symlinks
    real = os.path.realpath(cwd)
    if not any(_inside(real, os.path.realpath(root)) for root in policy.cwd_roots):
        shown = real if real == cwd else f"{real} (real path of {cwd})"
        raise Refused("cwd_roots", f"policy: cwd {shown} is not inside the cwd_roots of {policy.source('cwd_roots')}")


def _inside(path: str, root: str) -> bool:
    return root == "/" or path == root or path.startswith(root.rstrip("/") + "/")


def _check_executable(policy: Policy, request: StartRequest) -> None:
    if not policy.deny and ANYWHERE in policy.allow:
        return  # every absolute path matches: no need to resolve symlinks
    joined = os.path.join(request.cwd, request.executable)
    path = os.path.normpath(joined)
    named = os.path.join(os.path.realpath(os.path.dirname(joined)), os.path.basename(joined))
    real = os.path.realpath(joined)
    spellings = {path: path, named: named, real: real if real == named else f"{real} (real path of {named})"}
    for candidate, shown in spellings.items():
        for pattern, source in policy.deny:
            if _matches(candidate, pattern):
                raise Refused("deny", f"policy: {shown} is in the deny list of {source}")
    for candidate in (named, real):
        if not any(_matches(candidate, pattern) for pattern in policy.allow):
            where = policy.source("allow")
            raise Refused("allow", f"policy: {spellings[candidate]} is not in the allow list of {where}")


def _timeout(policy: Policy, asked: float | None) -> float | None:
    """The client's timeout, else the default; never above the maximum
    (which is also the default when no default is written)."""
    if asked is None:
        return policy.default_timeout if policy.default_timeout is not None else policy.max_timeout
    if policy.max_timeout is not None and asked > policy.max_timeout:
        raise Refused(
            "max_timeout",
            f"policy: timeout {asked:g} s is above the max_timeout {policy.max_timeout:g} s "
            f"of {policy.source('max_timeout')}",
        )
    return asked


def _matches(path: str, pattern: str) -> bool:
    return any(regex.match(path) for regex in _compiled(pattern))


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> tuple[re.Pattern[str], ...]:
    """The pattern, and the real-path spellings of it that apply (see the module doc)."""
    spellings = [pattern]
    if not WILDCARDS & set(pattern):
        spellings.append(os.path.realpath(pattern))
    directory, name = os.path.split(pattern)
    if not WILDCARDS & set(directory):
        spellings.append(os.path.join(os.path.realpath(directory), name))
    return tuple(_glob_regex(spelling) for spelling in dict.fromkeys(spellings))


def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**", index):
            parts.append(".*")
            index += 2
            continue
        char = pattern[index]
        parts.append("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
        index += 1
    return re.compile("".join(parts) + r"\Z", re.DOTALL)
