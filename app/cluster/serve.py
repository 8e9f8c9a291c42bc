"""What a node does when another asks it to act on one of its processes.

Requests arrive in order from app.cluster.bus; each is the same call a
local connection would make on the :class:`~app.processes.process.Process`,
so a remote ``write`` is queued on stdin exactly as a local one.  Who may
see the process was checked by the asking node, against the record's owner.
"""

from __future__ import annotations

from typing import Any

from app.cluster.mirror import Mirror
from app.deferred import deferred
from app.errors import ErrorCode, RpcError
from app.processes.process import Process
from app.recording.remote import RECORDING_OPS
from app.recording.store import Store
from app.registry.base import Answer
from app.registry.local import LocalRegistry

CLOSE_BY_ADMIN = 4000


class Server:
    def __init__(self, local: LocalRegistry, mirror: Mirror, recordings: Store) -> None:
        self._local = local
        self._mirror = mirror
        self._recordings = recordings

    def __call__(self, op: str, params: dict[str, Any], data: bytes) -> Answer:
        if op in RECORDING_OPS:
            return RECORDING_OPS[op](self._recordings, params)
        if op == "close_client":
            closed = self._local.close_client(params["client"], params["code"], params["reason"])
            if closed is None:
                raise RpcError(ErrorCode.NOT_FOUND, f"no such client: {params['client']}")
            return closed
        process = self._process(params["proc"])
        if op == "write":
            return process.write_stdin(data)
        if op == "close_stdin":
            return process.close_stdin()
        if op == "signal":
            return process.send_signal(params["signal"], params["group"])
        if op == "resize":
            return process.resize(params["rows"], params["cols"], params.get("controller", ""))
        if op == "forget_size":
            return process.forget_size(*params["controllers"])
        if op == "stop":
            return deferred(process.stop, params["signal"], params["grace"])
        if op == "wait":
            return deferred(process.wait, params["timeout"])
        if op == "mirror":
            self._mirror.start(process)
            return {"offsets": dict(process.offsets)}
        if op == "release":
            return self._local.release_process(process)
        raise RpcError(ErrorCode.METHOD_NOT_FOUND, f"unknown cluster request {op!r}")

    def _process(self, proc_id: int) -> Process:
        process = self._local.processes.get(proc_id)
        if process is None:
            raise RpcError(ErrorCode.NO_SUCH_PROCESS, f"no such process: {proc_id}")
        return process
