"""The one check between a ``start`` (or ``run``) and the launcher.

:func:`admitted` asks the identity's policy (:mod:`app.security.policy`) with the
registry's process counts, audits a refusal and answers it with the rule's
error; an allowed start holds a reservation in the counts until the process
is in the registry, so concurrent starts cannot pass a cap together.
:func:`record_start` audits the start and, later, the exit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from app.errors import RpcError
from app.processes.environment import server_directory
from app.processes.status import signal_name
from app.security import audit
from app.security.policy import Refused, StartRequest, check_start

if TYPE_CHECKING:
    from app.processes.options import Options
    from app.processes.process import Process
    from app.registry.base import Client, ProcessHandle, Registry
    from app.security.identity import Identity


class Requester(Protocol):
    """Who asks: a connection, as the protocol's methods act for it."""

    @property
    def identity(self) -> Identity: ...

    @property
    def client(self) -> Client: ...

    @property
    def registry(self) -> Registry: ...


class SpawnRequest(Protocol):
    """The parts of a ``start`` or ``run`` request the policy and the audit read."""

    argv: list[str]
    env: dict[str, str | None]
    clear_env: bool


@dataclasses.dataclass(frozen=True)
class Admission:
    """What an allowed start is launched with."""

    options: Options  # with the policy's timeout
    launch: dict[str, Any]  # LaunchSpec keyword arguments: rlimits, user, group
    record: bool = False  # the policy requires a recording
    record_input: bool = False


@contextmanager
def admitted(
    requester: Requester, params: SpawnRequest, executable: str, cwd: str | None, pty: bool, options: Options
) -> Iterator[Admission]:
    identity = requester.identity
    policy = identity.policy
    request = StartRequest(
        executable=executable,
        cwd=cwd or server_directory(),
        env=params.env,
        clear_env=params.clear_env,
        pty=pty,
        keep=options.keep,
        timeout=options.timeout,
    )
    own = total = 0
    if policy.max_procs is not None or policy.max_procs_total is not None:
        own, total = requester.registry.running_count(identity.name)
    try:
        grant = check_start(policy, request, own, total)
    except Refused as refusal:
        audit.event(
            "refused",
            client=requester.client.id,
            token=identity.name,
            remote_addr=requester.client.remote_addr,
            method=_method(params),
            argv=params.argv,
            code=int(refusal.code),
            rule=refusal.rule,
            message=refusal.message,
        )
        raise RpcError(refusal.code, refusal.message, {"rule": refusal.rule}) from None
    launch = {"rlimits": grant.rlimits, "user": grant.user, "group": grant.group}
    with requester.registry.reserved(identity.name):
        options = dataclasses.replace(options, timeout=grant.timeout)
        yield Admission(options, launch, grant.record, grant.record_input)


def record_start(
    requester: Requester,
    params: SpawnRequest,
    process: Process,
    executable: str,
    method: str | None = None,
    **more: Any,
) -> None:
    """Audit the start now and the exit when it comes; ``method`` and ``more`` for a program's start."""
    audit.event(
        "start",
        client=requester.client.id,
        token=requester.identity.name,
        role=requester.identity.role,
        method=method or _method(params),
        proc=process.id,
        pid=process.pid,
        argv=params.argv,
        executable=executable,
        cwd=process.cwd,
        pty=process.pty,
        keep=process.options.keep,
        timeout=process.options.timeout,
        **more,
    )
    process.when_finished.append(_record_exit)


def _record_exit(process: Process) -> None:
    status = process.status or {}
    audit.event(
        "exit",
        token=process.options.owner,
        proc=process.id,
        pid=process.pid,
        code=status.get("code"),
        signal=status.get("signal"),
        timed_out=status.get("timed_out"),
        duration=status.get("duration"),
    )


def record_signal(requester: Requester, process: ProcessHandle, method: str, signum: int, group: bool) -> None:
    audit.event(
        "signal",
        client=requester.client.id,
        token=requester.identity.name,
        method=method,
        proc=process.id,
        pid=process.pid,
        owner=process.options.owner,
        signal=signal_name(signum),
        group=group,
    )


def _method(params: SpawnRequest) -> str:
    return "start" if hasattr(params, "on_disconnect") else "run"
