"""A process that runs on another node, as the methods act on it.

It answers like a local :class:`~app.processes.process.Process`: commands
go to its node (app.cluster.bus) and come back as AsyncResults, its output
comes from Redis (app.cluster.feed).  A finished one, lost ones included,
is answered here from its record, with no round trip to a node that may
be gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from gevent.event import AsyncResult
from redis import Redis, RedisError

from app.cluster.bus import Bus, unavailable
from app.cluster.feed import Feed
from app.errors import ErrorCode, RpcError
from app.processes.options import Options
from app.processes.sinks import OutputSink, Subscription
from app.registry.base import Answer

INTERNAL_INFO = ("encoding", "binary", "streams", "client")  # what remote nodes need, not what list shows


@dataclass(frozen=True)
class Record:
    """A process as Redis keeps it (app.cluster.keys.proc)."""

    node: str
    info: dict[str, Any]
    offsets: dict[str, int]
    attached: int
    exit: dict[str, Any] | None
    size: dict[str, int] | None  # a terminal's size now (resizes update it)

    @classmethod
    def from_hash(cls, fields: Any) -> Record | None:
        """From HGETALL's answer (bytes to bytes); None if there is no record."""
        if b"info" not in fields:
            return None
        return cls(
            node=fields[b"node"].decode(),
            info=orjson.loads(fields[b"info"]),
            offsets=orjson.loads(fields.get(b"offsets", b"{}")),
            attached=int(fields.get(b"attached", 0)),
            exit=orjson.loads(fields[b"exit"]) if b"exit" in fields else None,
            size=orjson.loads(fields[b"size"]) if b"size" in fields else None,
        )

    def listed(self) -> dict[str, Any]:
        """As ``list`` and ``find`` show it: the fields of a local process's info."""
        shown = {key: value for key, value in self.info.items() if key not in INTERNAL_INFO}
        state = "running" if self.exit is None else "exited"
        dynamic = {"state": state, "exit": self.exit, "offsets": self.offsets, "attached": self.attached}
        return dict(shown, **dynamic, size=self.size, node=self.node)


class RemoteProcess:
    def __init__(self, record: Record, bus: Bus, redis: Redis) -> None:
        info = record.info
        self.id: int = info["proc"]
        self.pid: int = info["pid"]
        self.node = record.node
        self.options = Options(
            owner=info["owner"],
            name=info["name"],
            encoding=info["encoding"],
            binary=info["binary"],
            keep=info["on_disconnect"] == "keep",
        )
        self.streams: list[str] = info["streams"]
        self.offsets: dict[str, int] = dict(record.offsets)
        self.status: dict[str, Any] | None = record.exit
        self._record = record
        self._bus = bus
        self._redis = redis
        self._feeds: dict[int, Feed] = {}

    @property
    def running(self) -> bool:
        return self.status is None

    @property
    def followed(self) -> bool:
        """A connection here is attached: its feed learns of the exit."""
        return bool(self._feeds)

    def info(self) -> dict[str, Any]:
        return self._record.listed()

    # -- control -----------------------------------------------------------------------

    def write_stdin(self, data: bytes) -> AsyncResult:
        self._refuse_once_exited(f"process {self.id} has exited")
        return self._ask("write", data=data)

    def close_stdin(self) -> AsyncResult:
        self._refuse_once_exited(f"process {self.id} has exited")
        return self._ask("close_stdin")

    def send_signal(self, signum: int, group: bool = True) -> AsyncResult:
        self._refuse_once_exited("the process has exited")
        return self._ask("signal", signal=signum, group=group)

    def resize(self, rows: int, cols: int, controller: str = "") -> AsyncResult:
        if not self.info()["pty"]:
            raise RpcError(ErrorCode.INVALID_PARAMS, f"Invalid params: process {self.id} has no pty to resize")
        self._refuse_once_exited("the process has exited")
        return self._ask("resize", rows=rows, cols=cols, controller=controller)

    def forget_size(self, *controllers: str) -> Answer:
        """The owner applies the size rule: it must hear that these stopped counting."""
        if self.status is not None or not self.info()["pty"]:
            return {}
        return self._ask("forget_size", controllers=list(controllers))

    def stop(self, signum: int, grace: float | None = None) -> dict[str, Any]:
        if self.status is not None:
            return self.status
        return self._until_exit(self._ask("stop", bounded=False, signal=signum, grace=grace))

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        if self.status is not None:
            return self.status
        return self._until_exit(self._ask("wait", bounded=False, timeout=timeout))

    def _ask(self, op: str, data: bytes = b"", *, bounded: bool = True, **params: Any) -> AsyncResult:
        return self._bus.request(self.node, op, dict(params, proc=self.id), data, bounded=bounded)

    def _until_exit(self, answer: AsyncResult) -> dict[str, Any]:
        """The status the owner answers with; if the owner is lost meanwhile,
        the lost status the janitor recorded (or made here)."""
        try:
            self.status = answer.get()
        except RpcError as error:
            self._lost_meanwhile(error)
        assert self.status is not None
        return self.status

    def _lost_meanwhile(self, error: RpcError) -> None:
        """``error`` answered a request to the owner: if it says the owner was
        lost, the process ended lost (the janitor wrote that exit to its record
        and its streams before telling anyone); else it stands."""
        if not (error.data or {}).get("lost"):
            raise error
        self.status = lost_status(self.id, self.pid, self.node)

    def _refuse_once_exited(self, message: str) -> None:
        if self.status is not None:
            raise RpcError(ErrorCode.PROCESS_EXITED, message)

    # -- output --------------------------------------------------------------------------

    def subscribe(self, sink: OutputSink, offsets: dict[str, int]) -> Subscription:
        """Have the owner mirror the output (a kept process already is), then
        replay it from Redis and follow it.  An owner lost meanwhile ends the
        replay with the lost exit, as it ends a feed already following."""
        if self.status is None:
            try:
                self.offsets = self._ask("mirror").get()["offsets"]
            except RpcError as error:
                self._lost_meanwhile(error)
        feed = Feed(self._redis, self, sink)
        try:
            subscription = feed.replay(offsets)
        except RedisError:
            raise unavailable("Redis is unreachable") from None
        if subscription.live:
            self._feeds[id(sink)] = feed
            feed.follow()
        return subscription

    def unsubscribe(self, sink: OutputSink) -> None:
        feed = self._feeds.pop(id(sink), None)
        if feed is not None:
            feed.stop()

    def lose(self) -> None:
        """Its node was lost: end every feed with the lost status."""
        status = lost_status(self.id, self.pid, self.node)
        self.status = status
        for feed in list(self._feeds.values()):
            feed.end(status)
        self._feeds.clear()


def lost_status(proc_id: int, pid: int, node: str) -> dict[str, Any]:
    """The exit of a process whose node was lost: nobody saw how it ended."""
    return {
        "proc": proc_id,
        "pid": pid,
        "code": None,
        "signal": None,
        "core_dumped": False,
        "timed_out": False,
        "duration": None,
        "output_incomplete": True,
        "rusage": None,
        "lost": True,
        "node": node,
    }
