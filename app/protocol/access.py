"""What a connection may do to a process it did not start, and who is watching it.

Two limits apply before a method runs (:func:`permit`).  A ``view``
attachment receives output only: the methods that act on its process are
refused for that connection.  A share link's holder (app/security/shares.py)
may only watch its one process, and drive it if the share says ``control``.
Every refusal is -32003 and an audit line, and changes nothing.

:class:`Viewers` knows this worker's connections, so that ``find`` can say
who receives a process's output and its owner's connections hear (a
``viewers`` notification) when that changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from app.errors import ErrorCode, RpcError
from app.security.shares import CONTROL, VIEW

if TYPE_CHECKING:
    from app.registry.base import Client, ProcessHandle
    from app.security.identity import Identity

# The methods that act on a process: refused on a view attachment.
CONTROL_METHODS = frozenset({"write", "close_stdin", "resize", "signal", "stop", "kill", "release"})
# What a share link's holder may call whatever its mode (on its own process only, but ping and find).
SHARE_METHODS = frozenset({"ping", "attach", "detach", "find", "wait"})
ANY_PROCESS = frozenset({"ping", "find"})  # find names a pid: its answer is checked instead


class Watcher(Protocol):
    """A connection as access checks and viewer lists see it (the edge's Session)."""

    @property
    def identity(self) -> Identity: ...

    @property
    def client(self) -> Client: ...

    @property
    def modes(self) -> dict[int, str]: ...

    def receives(self, proc: int) -> bool:
        """Whether this connection gets the output of ``proc`` (it started or attached it)."""
        ...

    def notify(self, method: str, params: dict[str, Any]) -> None: ...


def permit(caller: Watcher, method: str, params: dict[str, Any]) -> None:
    """Refuse (-32003, audited) what this connection may not do, before it is done."""
    proc = params.get("proc")
    share = caller.identity.share
    if share is not None:
        if method not in SHARE_METHODS and not (share.mode == CONTROL and method in CONTROL_METHODS):
            _refuse(caller, method, proc, "share", f"a share link may not call {method}")
        if method not in ANY_PROCESS and proc != share.proc:
            _refuse(caller, method, proc, "share", f"this share link is for process {share.proc} only")
    if method in CONTROL_METHODS and isinstance(proc, int) and caller.modes.get(proc) == VIEW:
        _refuse(caller, method, proc, "view", f"process {proc} is attached in view mode on this connection")


def attach_mode(caller: Watcher, proc: int, requested: str | None) -> str:
    """The mode of an attachment: as asked, by default control (a share's holder: its share's mode),
    never stronger than a share allows."""
    share = caller.identity.share
    if share is None:
        return requested or CONTROL
    if requested == CONTROL and share.mode == VIEW:
        _refuse(caller, "attach", proc, "share", "this share link is view only")
    return requested or share.mode


def _refuse(caller: Watcher, method: str, proc: Any, rule: str, message: str) -> None:
    caller.client.audit(
        "refused", code=int(ErrorCode.PERMISSION_DENIED), rule=rule, method=method, proc=proc, message=message
    )
    data = {"rule": rule, "proc": proc} if isinstance(proc, int) else {"rule": rule}
    raise RpcError(ErrorCode.PERMISSION_DENIED, f"permission denied: {message}", data, refused_data=method == "write")


class Viewers:
    """This worker's connections: who receives which process's output, and in which mode."""

    def __init__(self) -> None:
        self._watchers: dict[str, Watcher] = {}

    def join(self, watcher: Watcher) -> None:
        self._watchers[watcher.client.id] = watcher

    def leave(self, watcher: Watcher, processes: list[ProcessHandle]) -> None:
        self._watchers.pop(watcher.client.id, None)
        for process in processes:
            self.changed(process, watcher)

    def of(self, proc: int) -> list[dict[str, Any]]:
        """The ``viewers`` of ``find`` and of the notification."""
        return [
            {"client": watcher.client.id, "name": watcher.identity.name, "mode": watcher.modes.get(proc, CONTROL)}
            for watcher in self._watchers.values()
            if watcher.receives(proc)
        ]

    def changed(self, process: ProcessHandle, by: Watcher) -> None:
        """Tell the owner's connections that receive ``process`` who does now (``by`` made the change:
        its answer says so)."""
        owner = process.options.owner
        listeners = [
            watcher
            for watcher in self._watchers.values()
            if watcher is not by and watcher.identity.name == owner and watcher.receives(process.id)
        ]
        if listeners:
            params = {"proc": process.id, "viewers": self.of(process.id)}
            for watcher in listeners:
                watcher.notify("viewers", params)


VIEWERS = Viewers()  # one per worker: connections are a worker's own


def found(caller: Watcher, answer: dict[str, Any]) -> dict[str, Any]:
    """A ``find`` answer: only a share's own process for its holder, with its viewers."""
    share = caller.identity.share
    if share is not None and answer.get("proc") != share.proc:
        raise RpcError(ErrorCode.NO_SUCH_PROCESS, f"no process of this share has pid {answer.get('pid')}")
    return dict(answer, viewers=VIEWERS.of(answer["proc"]))
