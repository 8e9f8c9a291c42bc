"""Requests to the node that owns a process, and their answers, over Redis pub/sub.

Each node listens on its own channel.  A request names its sender, which
gets the answer on its own channel; requests leave through the ordered
:class:`~app.cluster.writer.Writer`, and the owner serves them one at a
time in arrival order, so the writes of one connection reach the process
in order.  A request the owner cannot answer in time (Redis down, node
gone) fails with CLUSTER_UNAVAILABLE; ``lost`` says its node was declared
lost, so the caller can answer with the lost status instead.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
import orjson
from gevent.event import AsyncResult, Event
from redis import Redis, RedisError

from app.cluster import keys
from app.cluster.writer import Writer
from app.errors import ErrorCode, RpcError
from app.registry.base import Answer

log = logging.getLogger(__name__)

SEPARATOR = b"\n"  # between the JSON header and the raw bytes (orjson never writes a newline)
RETRY_INTERVAL = 0.5
EXPIRY_INTERVAL = 0.25  # seconds between checks of the requests' deadlines

Serve = Callable[[str, dict[str, Any], bytes], Answer]


@dataclass
class _Pending:
    node: str
    result: AsyncResult
    deadline: float | None


def unavailable(message: str, **data: Any) -> RpcError:
    return RpcError(ErrorCode.CLUSTER_UNAVAILABLE, f"cluster unavailable: {message}", data or None)


def encode(header: dict[str, Any], data: bytes = b"") -> bytes:
    return orjson.dumps(header) + SEPARATOR + data


def decode(message: bytes) -> tuple[dict[str, Any], bytes]:
    header, _, data = message.partition(SEPARATOR)
    return orjson.loads(header), data


class Bus:
    def __init__(self, redis: Redis, writer: Writer, node: str, timeout: float, serve: Serve) -> None:
        self._redis = redis
        self._writer = writer
        self.node = node
        self._timeout = timeout
        self._serve = serve
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self.listening = Event()  # set while subscribed: requests published to this node reach it
        self.on_node_lost: Callable[[str], None] = lambda node: None

    def start(self) -> None:
        gevent.spawn(self._listen)
        gevent.spawn(self._expire_forever)

    def _expire_forever(self) -> None:
        """On its own clock: a Redis that hangs must not delay the -32009 answers."""
        while True:
            gevent.sleep(EXPIRY_INTERVAL)
            self.expire()

    # -- asking ------------------------------------------------------------------------

    def request(
        self, node: str, op: str, params: dict[str, Any], data: bytes = b"", *, bounded: bool = True
    ) -> AsyncResult:
        """Ask ``node``; the answer lands in the AsyncResult.  An unbounded
        request (``wait``) ends only with its answer or its node's loss."""
        request_id = next(self._ids)
        result = AsyncResult()
        deadline = time.monotonic() + self._timeout if bounded else None
        self._pending[request_id] = _Pending(node, result, deadline)
        header = {"kind": "request", "id": request_id, "from": self.node, "op": op, "params": params}
        if not self._writer.put("PUBLISH", keys.inbox(node), encode(header, data), urgent=True):
            self._settle(request_id, error=unavailable("too many requests queued for Redis"))
        return result

    def expire(self) -> None:
        """Fail the bounded requests whose time is up."""
        now = time.monotonic()
        for request_id, pending in list(self._pending.items()):
            if pending.deadline is not None and pending.deadline < now:
                self._settle(request_id, error=unavailable(f"node {pending.node} did not answer", node=pending.node))

    def fail_node(self, node: str) -> None:
        """``node`` was declared lost: nothing it was asked will be answered."""
        for request_id, pending in list(self._pending.items()):
            if pending.node == node:
                self._settle(request_id, error=unavailable(f"node {node} was lost", node=node, lost=True))

    def fail_all(self, reason: str) -> None:
        for request_id in list(self._pending):
            self._settle(request_id, error=unavailable(reason))

    def waited_on(self) -> set[str]:
        """Nodes that owe an answer."""
        return {pending.node for pending in self._pending.values()}

    def _settle(self, request_id: int, result: Any = None, error: RpcError | None = None) -> None:
        pending = self._pending.pop(request_id, None)
        if pending is None:
            return
        if error is not None:
            pending.result.set_exception(error)
        else:
            pending.result.set(result)

    # -- listening ---------------------------------------------------------------------

    def _listen(self) -> None:
        """Forever: (re)subscribe and dispatch; a Redis outage only pauses it."""
        while True:
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(keys.inbox(self.node), keys.LOST)
                self.listening.set()
                for message in pubsub.listen():
                    self._dispatch_safely(message)
            except RedisError as error:
                log.debug("cluster: listening on %s failed: %s", self.node, error)
            self.listening.clear()
            gevent.sleep(RETRY_INTERVAL)

    def _dispatch_safely(self, message: dict[str, Any]) -> None:
        """A bad message is logged and dropped: the listener must never die."""
        try:
            self._dispatch(message)
        except Exception:
            log.exception("cluster: a message on %s could not be handled", message.get("channel"))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message["channel"] == keys.LOST.encode():
            lost = message["data"].decode()
            self.fail_node(lost)
            self.on_node_lost(lost)
            return
        header, data = decode(message["data"])
        if header["kind"] == "answer":
            error = header.get("error")
            self._settle(header["id"], header.get("result"), _rpc_error(error) if error else None)
        else:
            self._answer_request(header, data)

    def _answer_request(self, header: dict[str, Any], data: bytes) -> None:
        try:
            answer = self._serve(header["op"], header["params"], data)
        except Exception as error:
            self._reply(header, error=_as_rpc_error(error, header["op"]))
            return
        if isinstance(answer, AsyncResult):
            answer.rawlink(lambda done: self._reply_when_done(header, done))
        else:
            self._reply(header, result=answer)

    def _reply_when_done(self, header: dict[str, Any], done: AsyncResult) -> None:
        if done.successful():
            self._reply(header, result=done.value)
        else:
            self._reply(header, error=_as_rpc_error(done.exception, header["op"]))

    def _reply(self, header: dict[str, Any], result: Any = None, error: RpcError | None = None) -> None:
        answer: dict[str, Any] = {"kind": "answer", "id": header["id"]}
        if error is not None:
            answer["error"] = dict(error.to_json(), refused_data=error.refused_data)
        else:
            answer["result"] = result
        self._writer.put("PUBLISH", keys.inbox(header["from"]), encode(answer), urgent=True)


def _rpc_error(error: dict[str, Any]) -> RpcError:
    return RpcError(ErrorCode(error["code"]), error["message"], error.get("data"), refused_data=error["refused_data"])


def _as_rpc_error(error: BaseException | None, op: str) -> RpcError:
    if isinstance(error, RpcError):
        return error
    log.error("cluster: serving %s failed", op, exc_info=error)
    return RpcError(ErrorCode.INTERNAL_ERROR, f"Internal error: {type(error).__name__}")
