"""The JavaScript client (clients/js/procwire.js) in the sync Python client's shape, for the shared
behaviour suite (tests/test_client_behaviour.py).

Each :class:`JsClient` runs its own Node process, clients/js/test/bridge.mjs, which holds one real
procwire.js ``Client`` and performs commands sent as JSON lines.  This module only translates:
Python names and arguments to the JS client's, bytes to base64 and back, answers to the Python
result types, and a JS error to the ``procwire_client`` exception of the same name (``RpcError``:
``ProcwireError``; ``ConnectionError`` and ``ProcessLost``: ``ProcwireConnectionError``).

Composed here from the JS client's public API, as JavaScript has no ``with`` statement: leaving a
process's ``with`` block kills it if it still runs and waits a little for its exit, as the Python
clients do.  The timeout of ``iter_output`` bounds the whole iteration, each chunk being asked for
with what is left of it (the bridge's ``next`` command).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import procwire_client as pw

BRIDGE = Path(__file__).resolve().parent.parent / "clients" / "js" / "test" / "bridge.mjs"
ANSWER_BOUND = 60.0  # seconds for any answer of the bridge beyond the call's own timeout
EXIT_BOUND = 5.0  # seconds for the bridge to end once its stdin is closed
ERRORS_BY_JS_NAME: dict[str, type[BaseException]] = {
    "RpcError": pw.ProcwireError,
    "ConnectionError": pw.ProcwireConnectionError,
    "ProcessLost": pw.ProcwireConnectionError,
}


# -- values both ways ----------------------------------------------------------------------------


def _known(cls: Any, values: dict[str, Any]) -> Any:
    names = {field.name for field in dataclasses.fields(cls)}
    return cls(**{key: value for key, value in values.items() if key in names})


def exception(error: dict[str, Any], bridge: Bridge | None = None) -> BaseException:
    """The ``procwire_client`` exception for a JS error ``{class, message, fields}``."""
    name, message = error["class"], error["message"]
    fields = decode(error["fields"], bridge)
    cls = ERRORS_BY_JS_NAME.get(name) or getattr(pw, name, None)
    if isinstance(cls, type) and issubclass(cls, pw.ProcwireConnectionError):
        return cls(
            message, status=fields.get("status"), close_code=fields.get("code"), close_reason=fields.get("reason")
        )
    if cls is pw.OutputTruncated:
        return pw.OutputTruncated(message, _known(pw.Result, fields["result"]))
    if isinstance(cls, type) and issubclass(cls, pw.ProcwireError):
        return cls(message, fields.get("data"), code=fields.get("code"))
    return RuntimeError(f"the bridge failed: {name}: {message}")


def decode(value: Any, bridge: Bridge | None) -> Any:
    if isinstance(value, list):
        return [decode(item, bridge) for item in value]
    if not isinstance(value, dict):
        return value
    if "$bytes" in value:
        return base64.b64decode(value["$bytes"])
    if "$error" in value:
        return exception(value["$error"], bridge)
    if "$process" in value:
        assert bridge is not None
        return JsProcess(bridge, value["$process"], value["proc"], value["pid"])
    return {key: decode(item, bridge) for key, item in value.items()}


def encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {key: encode(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    return value


def pty_option(pty: Any) -> Any:
    """The JS client's ``pty`` option for the Python one's (``True``, ``(rows, cols)`` or a dict)."""
    if pty is True:
        return {"rows": 24, "cols": 80}
    if isinstance(pty, tuple | list):
        return {"rows": pty[0], "cols": pty[1]}
    return pty


def reconnect_option(reconnect: Any) -> Any:
    """The JS policy (milliseconds) for a :class:`procwire_client.Reconnect` (seconds)."""
    if not isinstance(reconnect, pw.Reconnect):
        return bool(reconnect)
    return {"first": reconnect.delay * 1000, "max": reconnect.max_delay * 1000, "deadline": reconnect.deadline * 1000}


# -- the Node process ----------------------------------------------------------------------------


class Bridge:
    """One Node process running bridge.mjs; answers are read by a thread and matched by id."""

    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("the JavaScript client needs Node.js 20 or later")
        self.process = subprocess.Popen(
            [node, str(BRIDGE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=BRIDGE.parent, text=True
        )
        self.ids = itertools.count(1)
        self.pending: dict[int, Future[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, name="js-bridge-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message = json.loads(line)
            with self.lock:
                future = self.pending.pop(message["id"])
            future.set_result(message)
        with self.lock:
            pending, self.pending = self.pending, {}
        for future in pending.values():
            future.set_exception(RuntimeError("the bridge ended"))

    def command(self, target: str | int, op: str, *args: Any, timeout: float | None = None) -> Any:
        """Run ``op`` on ``target`` in Node; its answer, or its error raised as a Python exception."""
        future: Future[dict[str, Any]] = Future()
        with self.lock:
            number = next(self.ids)
            self.pending[number] = future
            assert self.process.stdin is not None
            self.process.stdin.write(
                json.dumps({"id": number, "target": target, "op": op, "args": encode(args)}) + "\n"
            )
            self.process.stdin.flush()
        answer = future.result(ANSWER_BOUND + (timeout or 0))
        if "error" in answer:
            raise exception(answer["error"], self)
        return decode(answer["result"], self)

    def stop(self) -> None:
        """End the bridge (its client closes): stdin closed, then terminated by pid if need be."""
        if self.process.poll() is None:
            with self.lock, contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.close()
            try:
                self.process.wait(EXIT_BOUND)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(EXIT_BOUND)
        self.reader.join(EXIT_BOUND)


# -- the client and its processes ----------------------------------------------------------------


class JsClient:
    """A procwire.js ``Client`` with the sync Python client's methods."""

    def __init__(self, url: str, token: str | None, *, reconnect: Any = False, **options: Any) -> None:
        self._bridge = Bridge()
        try:
            self._bridge.command("client", "connect", url, token, {"reconnect": reconnect_option(reconnect), **options})
        except BaseException:
            self._bridge.stop()
            raise

    def _call(self, op: str, *args: Any, timeout: float | None = None) -> Any:
        return self._bridge.command("client", op, *args, timeout=timeout)

    def _get(self, name: str) -> Any:
        return self._call("get", name)

    @property
    def hello(self) -> dict[str, Any]:
        return self._get("hello")

    @property
    def client_id(self) -> str | None:
        hello = self.hello
        return hello["client_id"] if hello else None

    @property
    def closed(self) -> bool:
        return self._bridge.process.poll() is not None or self._get("closed")

    @property
    def reconnects(self) -> int:
        return self._get("reconnects")

    def ping(self) -> float:
        return self._call("ping")["time"]

    def lookpath(self, file: str | os.PathLike[str]) -> str:
        return self._call("lookpath", os.fspath(file))

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self._call("call", method, params or {})

    def run(self, argv: list[str], **options: Any) -> pw.Result:
        return _known(pw.Result, self._call("run", argv, options))

    def start(self, argv: list[str], *, pty: Any = None, **options: Any) -> JsProcess:
        return self._call("start", argv, {"pty": pty_option(pty), **options})

    def attach(self, proc: int, offset: Any = None, **options: Any) -> JsProcess:
        return self._call("attach", proc, {"offset": offset, **options})

    def wait(self, proc: int, timeout: float | None = None) -> pw.ExitStatus:
        return pw.ExitStatus.from_json(self._call("wait", proc, timeout, timeout=timeout))

    def signal(self, proc: int, sig: Any, *, group: bool = True) -> None:
        self._call("signal", proc, sig, {"group": group})

    def kill(self, proc: int) -> None:
        self._call("kill", proc)

    def stop(self, proc: int, signal: Any = "SIGTERM", grace: float | None = None) -> pw.ExitStatus:
        return pw.ExitStatus.from_json(self._call("stop", proc, {"signal": signal, "grace": grace}, timeout=grace))

    def release(self, proc: int) -> None:
        self._call("release", proc)

    def close(self) -> None:
        if self._bridge.process.poll() is None:
            self._call("close")
        self._bridge.stop()

    def __enter__(self) -> JsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class JsProcess:
    """A procwire.js ``Process`` with the sync Python client's ``Process`` methods."""

    def __init__(self, bridge: Bridge, handle: int, proc: int, pid: int | None) -> None:
        self._bridge = bridge
        self._handle = handle
        self.proc = proc
        self.pid = pid

    def _call(self, op: str, *args: Any, timeout: float | None = None) -> Any:
        return self._bridge.command(self._handle, op, *args, timeout=timeout)

    @property
    def offsets(self) -> dict[str, int]:
        return self._call("get", "offsets")

    @property
    def running(self) -> bool:
        return self._call("get", "running")

    @property
    def exit_status(self) -> pw.ExitStatus | None:
        status = self._call("get", "status")
        return None if status is None else pw.ExitStatus.from_json(status)

    @property
    def attachment(self) -> pw.Attachment | None:
        info = self._call("get", "info")
        return None if info is None else pw.Attachment.from_json(info)

    @property
    def stdin_error(self) -> BaseException | None:
        return self._call("get", "stdinError")

    def write(self, data: bytes | str, *, binary: bool = False) -> int:
        return self._call("write", data, {"binary": binary})["written"]

    def flush(self, timeout: float | None = None) -> None:
        self._call("flush", timeout=timeout)

    def close_stdin(self) -> None:
        self._call("closeStdin")

    def communicate(self, input: bytes | str | None = None, timeout: float | None = None) -> tuple[bytes, bytes]:
        output = self._call("communicate", input, timeout=timeout)
        return output["stdout"], output["stderr"]

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        return self.iter_output()

    def iter_output(self, timeout: float | None = None) -> Iterator[tuple[str, bytes]]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            chunk = self._call("next", left, timeout=left)
            if chunk is None:
                return
            yield chunk["stream"], chunk["data"]

    def wait(self, timeout: float | None = None) -> pw.ExitStatus:
        return pw.ExitStatus.from_json(self._call("wait", timeout, timeout=timeout))

    def signal(self, sig: Any, *, group: bool = True) -> None:
        self._call("signal", sig, {"group": group})

    def kill(self) -> None:
        self._call("kill")

    def stop(self, signal: Any = "SIGTERM", grace: float | None = None) -> pw.ExitStatus:
        return pw.ExitStatus.from_json(self._call("stop", {"signal": signal, "grace": grace}, timeout=grace))

    def detach(self) -> None:
        self._call("detach")

    def release(self) -> None:
        self._call("release")

    def __enter__(self) -> JsProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bridge.process.poll() is not None or not self.running:
            return
        with contextlib.suppress(pw.ProcwireError, pw.ProcwireConnectionError):
            self.kill()
            self.wait(10.0)
