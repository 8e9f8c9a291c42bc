"""The one check between a ``start`` (or ``run``) and the launcher.

:func:`admitted` asks the identity's policy (:mod:`app.policy`) with this
worker's process counts, audits a refusal and answers it with the rule's
error; an allowed start holds a reservation in the counts until the process
is in the registry, so concurrent starts cannot pass a cap together.
:func:`record_start` audits the start and, later, the exit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from app.errors import RpcError
from app.processes.environment import server_directory
from app.security import audit
from app.security.policy import Refused, StartRequest, check_start

if TYPE_CHECKING:
    from app.edge.session import Session
    from app.processes.process import Options, Process
    from app.protocol import params as P


@dataclasses.dataclass(frozen=True)
class Admission:
    """What an allowed start is launched with."""

    options: Options  # with the policy's timeout
    launch: dict[str, Any]  # LaunchSpec keyword arguments: rlimits, user, group


@contextmanager
def admitted(
    session: Session, params: P.SpawnParams, executable: str, cwd: str | None, pty: bool, options: Options
) -> Iterator[Admission]:
    identity = session.identity
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
        own, total = session.registry.running_count(identity.name)
    try:
        grant = check_start(policy, request, own, total)
    except Refused as refusal:
        audit.event(
            "refused",
            client=session.client.id,
            token=identity.name,
            remote_addr=session.client.remote_addr,
            method=_method(params),
            argv=params.argv,
            code=int(refusal.code),
            rule=refusal.rule,
            message=refusal.message,
        )
        raise RpcError(refusal.code, refusal.message, {"rule": refusal.rule}) from None
    launch = {"rlimits": grant.rlimits, "user": grant.user, "group": grant.group}
    with session.registry.reserved(identity.name):
        yield Admission(dataclasses.replace(options, timeout=grant.timeout), launch)


def record_start(session: Session, params: P.SpawnParams, process: Process, executable: str) -> None:
    """Audit the start now and the exit when it comes."""
    audit.event(
        "start",
        client=session.client.id,
        token=session.identity.name,
        role=session.identity.role,
        method=_method(params),
        proc=process.id,
        pid=process.pid,
        argv=params.argv,
        executable=executable,
        cwd=process.cwd,
        pty=process.pty,
        keep=process.options.keep,
        timeout=process.options.timeout,
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


def record_signal(session: Session, process: Process, method: str, signum: int, group: bool) -> None:
    from app.processes.process import signal_name

    audit.event(
        "signal",
        client=session.client.id,
        token=session.identity.name,
        method=method,
        proc=process.id,
        pid=process.pid,
        owner=process.options.owner,
        signal=signal_name(signum),
        group=group,
    )


def _method(params: P.SpawnParams) -> str:
    return "start" if hasattr(params, "on_disconnect") else "run"
