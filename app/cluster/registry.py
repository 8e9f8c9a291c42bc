"""The registry of a cluster: this worker's own processes in memory, everyone's in Redis.

Everything about a local process goes through the embedded
:class:`~app.registry.local.LocalRegistry` first, with no Redis round trip;
what other nodes need (records, counts, clients, kept output) is queued on
the :class:`~app.cluster.writer.Writer`.  A process of another node is
found from its record and acted on through a
:class:`~app.cluster.remote.RemoteProcess`.  When Redis is unreachable,
local work goes on; remote operations answer CLUSTER_UNAVAILABLE and
``list`` answers what this node knows, with ``"partial": true``.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any, cast

import orjson
from gevent.event import AsyncResult
from redis import Redis, RedisError
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from app.cluster import keys, records
from app.cluster.bus import Bus, unavailable
from app.cluster.ids import ProcIds, mark_file
from app.cluster.membership import Membership
from app.cluster.mirror import Mirror
from app.cluster.remote import Record, RemoteProcess
from app.cluster.serve import Server
from app.cluster.writer import Writer
from app.errors import ErrorCode, RpcError
from app.processes.process import Process
from app.recording import store_of
from app.registry.base import Answer, Client, ProcessHandle
from app.registry.local import LocalRegistry
from app.security.identity import Identity
from config import Settings

RETRY_CAP = 0.2  # seconds
CLOSE_TIMEOUT = 2.0  # seconds to write the last exits when the worker stops


class ClusterRegistry:
    def __init__(self, settings: Settings, node: str) -> None:
        self.node = node
        timeout = settings.CLUSTER_TIMEOUT / 2  # one retry still answers within CLUSTER_TIMEOUT
        self._redis = Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(ExponentialBackoff(cap=RETRY_CAP), retries=1),  # fail fast: callers answer -32009
        )
        self.local = LocalRegistry(node, on_forget=self._forgotten)
        self._writer = Writer(self._redis, settings.CLUSTER_MIRROR_BYTES)
        self._mirror = Mirror(self._writer, settings.DEFAULT_BUFFER_BYTES)
        serve = Server(self.local, self._mirror, store_of(settings))
        self._bus = Bus(self._redis, self._writer, node, settings.CLUSTER_TIMEOUT, serve)
        self._bus.on_node_lost = self._node_lost
        self._ids = ProcIds(self._redis, mark_file(settings.STATE_DIR, settings.BIND), settings.CLUSTER_HEARTBEAT)
        self._remote: weakref.WeakValueDictionary[int, RemoteProcess] = weakref.WeakValueDictionary()
        self.membership = Membership(
            self._redis,
            self._writer,
            self._bus,
            heartbeat=settings.CLUSTER_HEARTBEAT,
            timeout=settings.CLUSTER_NODE_TIMEOUT,
            keep_seconds=settings.KEEP_EXITED_SECONDS,
            register=self._register_everything,
            on_beat=self._ids.push_mark,
            refresh=self._refresh_offsets,
            watched=lambda: {process.node for process in self._remote.values()},
        )

    def start(self) -> None:
        self._writer.start()
        self._bus.start()
        self.membership.start()
        self._ids.refill_soon()  # the first start needs no round trip either

    # -- connections ----------------------------------------------------------------

    def add_client(self, client: Client) -> None:
        self.local.add_client(client)
        self._writer.put("HSET", keys.node_clients(self.node), client.id, orjson.dumps(client.info()), urgent=True)

    def remove_client(self, client: Client) -> None:
        self.local.remove_client(client)
        # At once: a client that reconnects elsewhere must not find its old connection still counted.
        self._writer.put("HDEL", keys.node_clients(self.node), client.id, urgent=True)

    def clients_info(self) -> list[dict[str, Any]]:
        local = [dict(info, node=self.node) for info in self.local.clients_info()]
        with contextlib.suppress(RedisError):
            return local + [info for _node, info in self._other_clients()]
        return local

    def connections_elsewhere(self, owner: str) -> int:
        """``owner``'s connections on the other nodes; without Redis, none are known."""
        with contextlib.suppress(RedisError):
            return sum(info["owner"] == owner for _node, info in self._other_clients())
        return 0

    def _other_clients(self) -> list[tuple[str, dict[str, Any]]]:
        nodes = [node for node in self._live_nodes() if node != self.node]
        pipeline = self._redis.pipeline(transaction=False)
        for node in nodes:
            pipeline.hvals(keys.node_clients(node))
        return [
            (node, dict(orjson.loads(info), node=node))
            for node, infos in zip(nodes, pipeline.execute(), strict=True)
            for info in infos
        ]

    def close_client(self, client_id: str, code: int, reason: str) -> dict[str, Any] | None:
        """Closed here, or by the node that serves it; None when no node has it.  Another node's
        list in Redis lags its closes (its writer's pipeline): a client just closed is still
        listed, and that node answers that it has no such client."""
        closed = self.local.close_client(client_id, code, reason)
        if closed is not None:
            return closed
        try:
            for node, info in self._other_clients():
                if info["id"] == client_id:
                    self._bus.request(node, "close_client", {"client": client_id, "code": code, "reason": reason}).get()
                    return info
        except RedisError:
            raise unavailable("Redis is unreachable") from None
        except RpcError as error:
            if error.code != ErrorCode.NOT_FOUND:
                raise
        return None

    def local_clients(self) -> list[Client]:
        return self.local.local_clients()

    # -- processes ------------------------------------------------------------------

    def next_proc_id(self) -> int:
        return self._ids.next()

    def add_process(self, client: Client, process: Process, *, keep_exited: int, keep_seconds: float) -> None:
        self.local.add_process(client, process, keep_exited=keep_exited, keep_seconds=keep_seconds)
        # A kept process is meant to be found from elsewhere, even if this worker dies right away.
        self._writer.put(*records.record(process, self.node, client.id), urgent=process.options.keep)
        process.when_finished.append(self._exited)
        process.on_resize = self._resized
        if process.options.keep:
            self._mirror.start(process)

    def _resized(self, process: Process) -> None:
        """Before the answer to a remote ``resize`` (the same ordered writer): ``find`` anywhere shows it."""
        self._writer.put(*records.sized(process), urgent=True)

    def _exited(self, process: Process) -> None:
        self._writer.put(*records.exited(process, self.node))

    def _forgotten(self, process: Process) -> None:
        """The local registry let a process go: so does the cluster."""
        self._writer.put(*records.forgotten(process, self.node))

    def forget(self, proc_id: int) -> None:
        self.local.forget(proc_id)

    def release(self, viewer: Identity, proc_id: int) -> Answer:
        if proc_id in self.local.processes:
            return self.local.release(viewer, proc_id)
        process = self._remote_process(viewer, proc_id)
        if process.running:
            raise RpcError(ErrorCode.PROCESS_RUNNING, f"process {proc_id} is still running")
        if process.status and process.status.get("lost"):
            try:  # at once, not queued: the caller may list right after
                self._redis.execute_command(*records.forgotten_record(proc_id, process.options.owner, process.node))
            except RedisError:
                raise unavailable("Redis is unreachable") from None
            return {}
        return self._bus.request(process.node, "release", {"proc": proc_id})

    def lookup(self, viewer: Identity, proc_id: int) -> ProcessHandle:
        process = self.local.processes.get(proc_id)
        if process is not None:
            return self.local.lookup(viewer, proc_id)
        return self._remote_process(viewer, proc_id)

    def _remote_process(self, viewer: Identity, proc_id: int) -> RemoteProcess:
        """From its record; a process this node follows (attached) is known
        well enough without one: its feed tracks its end."""
        followed = self._remote.get(proc_id)
        if followed is not None and followed.followed and viewer.may_see(followed.options.owner):
            return followed
        try:
            record = Record.from_hash(self._redis.hgetall(keys.proc(proc_id)))
        except RedisError:
            raise unavailable("Redis is unreachable") from None
        missing = record is None or (record.node == self.node and record.exit is None)
        if missing or not viewer.may_see(record.info["owner"]):  # type: ignore[union-attr]
            raise RpcError(ErrorCode.NO_SUCH_PROCESS, f"no such process: {proc_id}")
        assert record is not None
        known = self._remote.get(proc_id)
        if known is not None:
            known.status = known.status or record.exit
            return known
        process = RemoteProcess(record, self._bus, self._redis)
        self._remote[proc_id] = process
        return process

    def visible_to(self, viewer: Identity) -> dict[str, Any]:
        local = self._visible_here(viewer)
        try:
            return {"processes": local + [record.listed() for record in self._visible_elsewhere(viewer)]}
        except RedisError:
            return {"processes": local, "partial": True}

    def find(self, viewer: Identity, pid: int) -> dict[str, Any]:
        for listed in self.visible_to(viewer)["processes"]:
            if listed["pid"] == pid:
                return listed
        raise RpcError(ErrorCode.NO_SUCH_PROCESS, f"no process of yours has pid {pid}")

    def _visible_here(self, viewer: Identity) -> list[dict[str, Any]]:
        return [
            self.local.listed(process)
            for process in self.local.processes.values()
            if viewer.may_see(process.options.owner)
        ]

    def _visible_elsewhere(self, viewer: Identity | None) -> list[Record]:
        """Records of other nodes' processes ``viewer`` may see (None: every one)."""
        everyone = viewer is None or viewer.is_admin
        members = self._redis.smembers(keys.PROCS if everyone else keys.owner_procs(viewer.name))  # type: ignore[union-attr]
        proc_ids = sorted(int(member) for member in members if int(member) not in self.local.processes)
        pipeline = self._redis.pipeline(transaction=False)
        for proc_id in proc_ids:
            pipeline.hgetall(keys.proc(proc_id))
        records = [Record.from_hash(fields) for fields in pipeline.execute()]
        for proc_id, record in zip(proc_ids, records, strict=True):
            if record is None:  # expired with its node, or deleted: the indexes follow lazily
                self._writer.put("SREM", keys.PROCS, proc_id)
                if viewer is not None and not viewer.is_admin:
                    self._writer.put("SREM", keys.owner_procs(viewer.name), proc_id)
        return [
            record
            for record in records
            if record is not None
            and record.node != self.node
            and (viewer is None or viewer.may_see(record.info["owner"]))
        ]

    def running_count(self, owner: str) -> tuple[int, int]:
        """Running on the other live nodes (as they last wrote), plus here, exactly.

        Redis is read first: nothing may yield between counting this node's
        processes and the reservation that follows (start_gate), or concurrent
        starts on this node could pass a cap together."""
        own = total = 0
        with contextlib.suppress(RedisError):
            nodes = [node for node in self._live_nodes() if node != self.node]
            pipeline = self._redis.pipeline(transaction=False)
            for node in nodes:
                pipeline.hgetall(keys.node_running(node))
            for counts in pipeline.execute():
                own += int(counts.get(owner.encode(), 0))
                total += sum(int(count) for count in counts.values())
        here_own, here_total = self.local.running_count(owner)
        return own + here_own, total + here_total

    def reserved(self, owner: str) -> contextlib.AbstractContextManager[None]:
        return self.local.reserved(owner)

    def all_processes(self) -> list[dict[str, Any]]:
        local = [self.local.describe(process) for process in self.local.processes.values()]
        with contextlib.suppress(RedisError):
            elsewhere = self._visible_elsewhere(None)
            return local + [dict(record.listed(), client=record.info.get("client")) for record in elsewhere]
        return local

    def local_processes(self) -> list[Process]:
        return self.local.local_processes()

    def ask_other_nodes(self, op: str, params: dict[str, Any], only: str | None = None) -> dict[str, AsyncResult]:
        """Unreachable Redis: no node is asked (the caller says its answer is partial)."""
        if only is not None:
            return {only: self._bus.request(only, op, params)}
        try:
            nodes = [node for node in self._live_nodes() if node != self.node]
        except RedisError:
            raise unavailable("Redis is unreachable") from None
        return {node: self._bus.request(node, op, params) for node in nodes}

    # -- membership -------------------------------------------------------------------

    def _live_nodes(self) -> list[str]:
        return [node.decode() for node in cast(list[bytes], self._redis.zrange(keys.NODES, 0, -1))]

    def _register_everything(self) -> None:
        """After a start, a Redis restart or lost writes: write all this node knows.
        Records left under this node's name by an earlier worker are lost ones."""
        recorded = {int(proc_id) for proc_id in self._redis.smembers(keys.node_procs(self.node))}
        self.membership.mark_lost(self.node, sorted(recorded - set(self.local.processes)))
        for key in (keys.node_procs(self.node), keys.node_running(self.node), keys.node_clients(self.node)):
            self._writer.put("DEL", key)
        for client in self.local.clients.values():
            self._writer.put("HSET", keys.node_clients(self.node), client.id, orjson.dumps(client.info()))
        for process in self.local.processes.values():
            starter = self.local.starters.get(process.id)
            self._writer.put(*records.record(process, self.node, starter.id if starter else None))
            if process.options.keep:
                self._mirror.restart(process)

    def _refresh_offsets(self) -> None:
        """How far the running processes have written and who follows them, for ``list`` elsewhere."""
        for process in self.local.processes.values():
            if process.running:
                self._writer.put(*records.progress(process))

    def close(self) -> None:
        """A graceful stop: the exits of the processes just stopped reach Redis,
        then the node leaves (no sweep will call it lost)."""
        self._writer.drain(CLOSE_TIMEOUT)
        with contextlib.suppress(RedisError):
            self.membership.leave()

    def _node_lost(self, node: str) -> None:
        for process in list(self._remote.values()):
            if process.node == node:
                process.lose()
        for local in self.local.processes.values():  # its connections' terminal sizes stop counting
            if local.window is not None:
                local.forget_size(*local.window.controllers_of(f"{node}/"))
