"""A synchronous procwire client over one WebSocket.

One background thread reads every frame: it answers the server's pings,
hands each answer to the request that waits for it (matched by id) and
routes ``output``/``exit`` notifications and binary output frames to the
:class:`Process` they belong to (by ``proc``).  Every write to the socket
goes through one lock.  Output is queued per process without bound, so a
process's output never holds up the answers or another process's output;
read it (iterate over the process) to free it.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import queue
import re
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import websocket
from websocket import ABNF

from procwire_client.errors import (
    AuthenticationError,
    InvalidParams,
    ProcessExited,
    ProcwireConnectionError,
    ProcwireError,
    Timeout,
    error_from_json,
)

DEFAULT_URL = "ws://127.0.0.1:9999/ws"
BINARY_HEADER = struct.Struct("!BI")
BINARY_STREAMS = {1: "stdout", 2: "stderr"}
# Unanswered stdin bytes per process when the server does not report its
# STDIN_BUFFER_BYTES (4 MiB by default): beyond that it refuses writes.
DEFAULT_WRITE_WINDOW = 1 << 20
DEFAULT_MAX_MESSAGE = 1 << 20
DEFAULT_MAX_CHUNK = 512 * 1024
JSON_SLACK = 4096  # room for the JSON around a write's data
DEFAULT_RUN_MAX_OUTPUT = 16 * 1024 * 1024

# The server runs on Linux: exit statuses name Linux signals, so their numbers
# (for 128+N) are Linux's, whatever the client's own platform numbers them.
LINUX_SIGNALS = {
    "SIGHUP": 1,
    "SIGINT": 2,
    "SIGQUIT": 3,
    "SIGILL": 4,
    "SIGTRAP": 5,
    "SIGABRT": 6,
    "SIGIOT": 6,
    "SIGBUS": 7,
    "SIGFPE": 8,
    "SIGKILL": 9,
    "SIGUSR1": 10,
    "SIGSEGV": 11,
    "SIGUSR2": 12,
    "SIGPIPE": 13,
    "SIGALRM": 14,
    "SIGTERM": 15,
    "SIGSTKFLT": 16,
    "SIGCHLD": 17,
    "SIGCONT": 18,
    "SIGSTOP": 19,
    "SIGTSTP": 20,
    "SIGTTIN": 21,
    "SIGTTOU": 22,
    "SIGURG": 23,
    "SIGXCPU": 24,
    "SIGXFSZ": 25,
    "SIGVTALRM": 26,
    "SIGPROF": 27,
    "SIGWINCH": 28,
    "SIGIO": 29,
    "SIGPOLL": 29,
    "SIGPWR": 30,
    "SIGSYS": 31,
    "SIGRTMIN": 34,
    "SIGRTMAX": 64,
}


def signal_number(name: str | None) -> int | None:
    """The (Linux) number of a signal name as the server reports it: ``"SIGKILL"``, ``"SIG35"``."""
    if name is None:
        return None
    if name in LINUX_SIGNALS:
        return LINUX_SIGNALS[name]
    match = re.fullmatch(r"SIG(\d+)", name)
    return int(match.group(1)) if match else None


def signal_param(sig: Any) -> str | int:
    """A signal as the protocol takes it: a name (portable between hosts) or a number."""
    name = getattr(sig, "name", None)  # signal.Signals members
    if isinstance(name, str):
        return name
    if isinstance(sig, bool) or not isinstance(sig, str | int):
        raise TypeError(f"a signal is a name or a number, not {sig!r}")
    return sig


def _known_fields(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    names = {item.name for item in fields(cls)}
    return {key: value for key, value in values.items() if key in names}


# -- results ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExitStatus:
    """How a process ended (the ``exit`` notification, ``wait``, ``stop``)."""

    proc: int
    pid: int | None = None
    code: int | None = None
    signal: str | None = None
    core_dumped: bool = False
    timed_out: bool = False
    duration: float | None = None
    output_incomplete: bool = False
    rusage: dict[str, Any] | None = field(default_factory=dict)  # None when lost
    lost: bool = False  # cluster mode: the node running it died, nobody saw the end
    node: str | None = None  # the node that was lost

    @classmethod
    def from_json(cls, status: Mapping[str, Any]) -> ExitStatus:
        return cls(**_known_fields(ExitStatus, status))

    @property
    def signal_number(self) -> int | None:
        return signal_number(self.signal)

    @property
    def exit_code(self) -> int:
        """Shell style: the code, or 128+N when signal N killed the process."""
        if self.code is not None:
            return self.code
        number = self.signal_number
        return 128 + number if number is not None else 255

    @property
    def returncode(self) -> int:
        """:mod:`subprocess` style: the code, or -N when signal N killed the process."""
        if self.code is not None:
            return self.code
        number = self.signal_number
        return -number if number is not None else -255

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass(frozen=True)
class Result(ExitStatus):
    """What :meth:`Client.run` returns: the exit status and the collected output."""

    stdout: bytes = b""
    stderr: bytes = b""
    truncated: dict[str, bool] = field(default_factory=lambda: {"stdout": False, "stderr": False})

    @classmethod
    def from_json(cls, result: Mapping[str, Any]) -> Result:
        values = _known_fields(Result, result)
        for stream in ("stdout", "stderr"):
            values[stream] = _decode(result.get(stream) or "", result.get("encoding"))
        return cls(**values)


@dataclass(frozen=True)
class ProcessInfo:
    """One item of :meth:`Client.list`; members this client does not know are in ``extra``."""

    proc: int
    pid: int | None = None
    pgid: int | None = None
    name: str | None = None
    argv: list[str] = field(default_factory=list)
    cwd: str | None = None
    state: str = "running"
    started_at: float | None = None
    exit: ExitStatus | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, info: Mapping[str, Any]) -> ProcessInfo:
        return _with_exit_and_extra(cls, info)


@dataclass(frozen=True)
class Attachment:
    """The answer to ``attach``: where the streams stand and what the replay lost."""

    proc: int
    offsets: dict[str, int] = field(default_factory=dict)
    truncated: bool = False
    state: str = "running"
    exit: ExitStatus | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, answer: Mapping[str, Any]) -> Attachment:
        return _with_exit_and_extra(cls, answer)


def _with_exit_and_extra(cls: Any, values: Mapping[str, Any]) -> Any:
    """``cls`` from an answer: known fields, ``exit`` as an ExitStatus, the rest in ``extra``."""
    known = _known_fields(cls, values)
    known.pop("extra", None)
    if values.get("exit") is not None:
        known["exit"] = ExitStatus.from_json(values["exit"])
    extra = {key: value for key, value in values.items() if key not in known}
    return cls(**known, extra=extra)


def _decode(data: str, encoding: str | None) -> bytes:
    return base64.b64decode(data) if encoding == "base64" else data.encode("utf-8")


def _data_param(data: bytes, limit: int, key: str = "data", encoding_key: str = "encoding") -> dict[str, str]:
    """Bytes as text when they are UTF-8 (and their JSON fits in ``limit``), else base64."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        # JSON escapes control characters as \u00XX: check the size only when that could matter.
        if (
            len(data) * 6 + JSON_SLACK <= limit
            or len(json.dumps(text, ensure_ascii=False).encode()) + JSON_SLACK <= limit
        ):
            return {key: text}
    return {key: base64.b64encode(data).decode("ascii"), encoding_key: "base64"}


# -- plumbing -----------------------------------------------------------------------


class _Call:
    """A request waiting for its answer; ``callback`` runs in the reader thread first."""

    __slots__ = ("callback", "done", "error", "method", "result")

    def __init__(self, method: str, callback: Callable[[_Call], None] | None = None) -> None:
        self.method = method
        self.callback = callback
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        if self.done.is_set():
            return
        self.result, self.error = result, error
        try:
            if self.callback is not None:
                self.callback(self)
        finally:
            self.done.set()

    def get(self, timeout: float | None = None) -> Any:
        if not self.done.wait(timeout):
            raise Timeout(f"no answer to {self.method} within {timeout} s")
        if self.error is not None:
            raise self.error
        return self.result


class _End:
    """Put in a process's output queue when its stream ends."""


_END = _End()


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _close_message(code: int | None, reason: str) -> str:
    if code is None:
        return "the server closed the connection"
    text = f"the server closed the connection ({code}"
    return text + (f" {reason})" if reason else ")")


# -- the client -----------------------------------------------------------------------


class Client:
    """One connection to a procwire server.

    ``url`` and ``token`` default to ``$PROCWIRE_URL`` (else
    ``ws://127.0.0.1:9999/ws``) and ``$PROCWIRE_TOKEN``.  The token is sent as
    ``Authorization: Bearer``.  Use it as a context manager, or call
    :meth:`close`; closing the connection makes the server stop the processes
    it started (except those started with ``on_disconnect="keep"``).
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        connect_timeout: float = 10.0,
        headers: Sequence[str] = (),
    ) -> None:
        self.url = url or os.environ.get("PROCWIRE_URL") or DEFAULT_URL
        if token is None:
            token = os.environ.get("PROCWIRE_TOKEN")
        self._ids = itertools.count(1)
        self._lock = threading.RLock()  # pending answers, routed processes, closed state
        self._send_lock = threading.Lock()  # every frame written to the socket
        self._pending: dict[int, _Call] = {}
        self._procs: dict[int, Process] = {}  # whose output this connection receives
        self._handles: weakref.WeakValueDictionary[int, Process] = weakref.WeakValueDictionary()
        self._closed: ProcwireConnectionError | None = None
        self._closing = False
        self._last_writer: weakref.ref[Process] | None = None
        self.stray_errors: list[ProcwireError] = []  # id-null errors no process could be blamed for
        self._ws = self._connect(token, connect_timeout, list(headers))
        try:
            self.hello: dict[str, Any] = self._read_hello()
        except BaseException:
            self._ws.shutdown()
            raise
        limits = self.hello.get("limits") or {}
        self.max_message_bytes = int(limits.get("max_message_bytes") or DEFAULT_MAX_MESSAGE)
        max_chunk = int(limits.get("max_stdin_chunk") or DEFAULT_MAX_CHUNK)
        # A base64 chunk must fit in one message with its JSON around it.
        self.write_chunk = max(1, min(max_chunk, (self.max_message_bytes - JSON_SLACK) // 4 * 3))
        self.write_window = int(limits.get("stdin_buffer_bytes") or DEFAULT_WRITE_WINDOW)
        self._ws.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, name="procwire-reader", daemon=True)
        self._reader.start()

    # -- connection -------------------------------------------------------------

    def _connect(self, token: str | None, timeout: float, headers: list[str]) -> websocket.WebSocket:
        if token:
            headers.append(f"Authorization: Bearer {token}")
        try:
            return websocket.create_connection(
                self.url, timeout=timeout, header=headers, skip_utf8_validation=True, enable_multithread=True
            )
        except websocket.WebSocketBadStatusException as error:
            raise self._refused(error) from None
        except (OSError, ValueError, websocket.WebSocketException) as error:
            detail = str(error) or type(error).__name__
            raise ProcwireConnectionError(f"cannot connect to {self.url}: {detail}") from None

    def _refused(self, error: websocket.WebSocketBadStatusException) -> ProcwireConnectionError:
        status = error.status_code
        detail = ""
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(error.resp_body or b"{}").get("error", "")
        detail = detail or error.status_message or "handshake refused"
        cls = AuthenticationError if status == 401 else ProcwireConnectionError
        return cls(f"{self.url} refused the connection: HTTP {status}: {detail}", status=status)

    def _read_hello(self) -> dict[str, Any]:
        try:
            opcode, data = self._ws.recv_data()
        except (OSError, websocket.WebSocketException) as error:
            raise ProcwireConnectionError(f"no hello from {self.url}: {error or type(error).__name__}") from None
        try:
            message = json.loads(data) if opcode == ABNF.OPCODE_TEXT else None
        except ValueError:
            message = None
        if not isinstance(message, dict) or message.get("method") != "hello":
            raise ProcwireConnectionError(f"{self.url} is not a procwire server (no hello)")
        return message.get("params") or {}

    @property
    def client_id(self) -> str | None:
        return self.hello.get("client_id")

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def close(self, timeout: float = 5.0) -> None:
        """Close the connection (code 1000) and wait for the reader to end."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        in_reader = threading.current_thread() is self._reader
        if self._closed is None:
            try:
                with self._send_lock:
                    self._ws.send(struct.pack("!H", 1000), ABNF.OPCODE_CLOSE)
            except (OSError, websocket.WebSocketException):
                pass
            if not in_reader:
                self._reader.join(timeout)
        self._ws.abort()  # wakes the reader if it still waits
        if not in_reader:
            self._reader.join(1.0)
        self._ws.shutdown()
        self._shutdown(ProcwireConnectionError("the connection is closed"))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lost(self) -> ProcwireConnectionError:
        """A fresh exception saying why the connection is gone."""
        reason = self._closed or ProcwireConnectionError("the connection is closed")
        return type(reason)(
            reason.message, status=reason.status, close_code=reason.close_code, close_reason=reason.close_reason
        )

    def _shutdown(self, reason: ProcwireConnectionError) -> None:
        """The connection is gone: fail every waiting request and end every stream."""
        with self._lock:
            if self._closed is None:
                self._closed = reason
            pending = list(self._pending.values())
            self._pending.clear()
            processes = list(self._procs.values())
            self._procs.clear()
        for call in pending:
            call.finish(error=self._lost())
        for process in processes:
            process._connection_lost(self._lost())

    # -- sending ------------------------------------------------------------------

    def _send(self, message: Any) -> None:
        self._send_frame(json.dumps(message, ensure_ascii=False, separators=(",", ":")), ABNF.OPCODE_TEXT)

    def _send_frame(self, payload: str | bytes, opcode: int) -> None:
        with self._send_lock:
            if self._closed is not None or self._closing:
                raise self._lost()
            try:
                self._ws.send(payload, opcode)
            except (OSError, websocket.WebSocketException) as error:
                raise ProcwireConnectionError(f"connection lost: {error or type(error).__name__}") from None

    def _request(
        self, method: str, params: Mapping[str, Any] | None = None, callback: Callable[[_Call], None] | None = None
    ) -> _Call:
        call = _Call(method, callback)
        with self._lock:
            if self._closed is not None:
                raise self._lost()
            request_id = next(self._ids)
            self._pending[request_id] = call
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params:
            message["params"] = dict(params)
        try:
            self._send(message)
        except BaseException as error:
            with self._lock:
                self._pending.pop(request_id, None)
            call.finish(error=error)
            raise
        return call

    def call(self, method: str, params: Mapping[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """Send any request and return its result (raises the typed error of an error answer)."""
        return self._request(method, params).get(timeout)

    def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Send a notification: never answered, except a refused ``write``, whose error
        (id null) lands on that process (see :attr:`Process.stdin_error`) or in
        :attr:`stray_errors`."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params:
            message["params"] = dict(params)
            writer = self._handles.get(params.get("proc")) if method == "write" else None  # type: ignore[arg-type]
            if writer is not None:
                self._last_writer = weakref.ref(writer)
        self._send(message)

    # -- reading ------------------------------------------------------------------

    def _read_loop(self) -> None:
        ws = self._ws
        reason: ProcwireConnectionError | None = None
        try:
            while True:
                frame = ws.recv_frame()
                opcode = frame.opcode
                if opcode in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY, ABNF.OPCODE_CONT):
                    ws.cont_frame.validate(frame)
                    ws.cont_frame.add(frame)
                    if ws.cont_frame.is_fire(frame):
                        opcode, whole = ws.cont_frame.extract(frame)
                        if opcode == ABNF.OPCODE_TEXT:
                            self._on_text(whole.data)
                        else:
                            self._on_binary(whole.data)
                elif opcode == ABNF.OPCODE_PING:
                    with self._send_lock:
                        ws.send(frame.data, ABNF.OPCODE_PONG)
                elif opcode == ABNF.OPCODE_CLOSE:
                    reason = self._on_close(bytes(frame.data))
                    return
        except Exception as error:
            if self._closing:
                reason = ProcwireConnectionError("the connection is closed")
            else:
                detail = str(error) or type(error).__name__
                reason = ProcwireConnectionError(f"connection to {self.url} lost: {detail}")
        finally:
            self._shutdown(reason or ProcwireConnectionError("the connection is closed"))

    def _on_close(self, payload: bytes) -> ProcwireConnectionError:
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        reason = payload[2:].decode("utf-8", "replace")
        if not self._closing:  # echo the server's Close, as RFC 6455 asks
            try:
                with self._send_lock:
                    self._ws.send(payload[:2], ABNF.OPCODE_CLOSE)
            except (OSError, websocket.WebSocketException):
                pass
            return ProcwireConnectionError(_close_message(code, reason), close_code=code, close_reason=reason)
        return ProcwireConnectionError("the connection is closed", close_code=code, close_reason=reason)

    def _on_text(self, data: bytes | str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return
        for item in message if isinstance(message, list) else [message]:
            if isinstance(item, dict):
                self._on_message(item)

    def _on_message(self, message: dict[str, Any]) -> None:
        if "id" not in message:
            params = message.get("params")
            if not isinstance(params, dict):
                return
            method = message.get("method")
            if method == "output":
                self._on_output(params)
            elif method == "exit":
                self._on_exit(params)
            elif method == "screen":
                self._on_screen(params)
            return
        request_id = message["id"]
        if request_id is None:
            if isinstance(message.get("error"), dict):
                self._on_stray_error(error_from_json(message["error"]))
            return
        with self._lock:
            call = self._pending.pop(request_id, None)
        if call is None:
            return
        if "error" in message:
            call.finish(error=error_from_json(message["error"]))
        else:
            call.finish(result=message.get("result"))

    def _on_output(self, params: dict[str, Any]) -> None:
        process = self._procs.get(params.get("proc"))  # type: ignore[arg-type]
        if process is not None:
            data = _decode(params.get("data", ""), params.get("encoding"))
            process._output(params.get("stream", "stdout"), data, params.get("offset"))

    def _on_screen(self, params: dict[str, Any]) -> None:
        process = self._procs.get(params.get("proc"))  # type: ignore[arg-type]
        offset = params.get("offset")
        if process is not None and isinstance(params.get("data"), str) and isinstance(offset, int):
            process._screen(params["data"].encode("utf-8"), offset)

    def _on_binary(self, frame: bytes) -> None:
        if len(frame) < BINARY_HEADER.size:
            return
        stream, proc = BINARY_HEADER.unpack_from(frame)
        process = self._procs.get(proc)
        if process is not None and stream in BINARY_STREAMS:
            process._output(BINARY_STREAMS[stream], bytes(frame[BINARY_HEADER.size :]), None)

    def _on_exit(self, params: dict[str, Any]) -> None:
        with self._lock:
            process = self._procs.pop(params.get("proc"), None)  # type: ignore[arg-type]
        if process is not None:
            process._exited(ExitStatus.from_json(params))

    def _on_stray_error(self, error: ProcwireError) -> None:
        """An error with id null: a refused stdin write.  Pin it on the process it names,
        else on the last process written to; keep it on the client otherwise."""
        process: Process | None = None
        match = re.search(r"process:? (\d+)", error.message)
        if match:
            process = self._handles.get(int(match.group(1)))
        if process is None and self._last_writer is not None:
            candidate = self._last_writer()
            if candidate is not None and (not match or candidate.proc == int(match.group(1))):
                process = candidate
        if process is not None:
            process._stdin_failed(error)
        else:
            self.stray_errors.append(error)

    def _route(self, process: Process) -> Process | None:
        """Send ``proc``'s output to ``process`` from now on; the previous receiver, if any."""
        with self._lock:
            if self._closed is not None:
                raise self._lost()
            previous = self._procs.get(process.proc)
            self._procs[process.proc] = process
            self._handles[process.proc] = process
        return previous

    def _unroute(self, process: Process) -> None:
        with self._lock:
            if self._procs.get(process.proc) is process:
                del self._procs[process.proc]

    # -- methods ------------------------------------------------------------------

    def ping(self) -> float:
        """The server's Unix time."""
        return self.call("ping")["time"]

    def lookpath(self, file: str | os.PathLike[str]) -> str:
        """Resolve an executable with the server's ``PATH``."""
        return self.call("lookpath", {"file": os.fspath(file)})["path"]

    def list(self) -> list[ProcessInfo]:
        """The processes of this token: running, and exited ones not yet forgotten."""
        return [ProcessInfo.from_json(info) for info in self.call("list")["processes"]]

    def find(self, pid: int) -> ProcessInfo:
        return ProcessInfo.from_json(self.call("find", {"pid": pid}))

    def release(self, proc: int) -> None:
        self.call("release", {"proc": proc})

    def signal(self, proc: int, sig: Any, *, group: bool = True) -> None:
        """Send ``sig`` (name, number or :class:`signal.Signals`) to the process group (or the process)."""
        self.call("signal", {"proc": proc, "signal": signal_param(sig), "group": group})

    def kill(self, proc: int) -> None:
        """SIGKILL to the process group."""
        self.call("kill", {"proc": proc})

    def stop(self, proc: int, signal: Any = "SIGTERM", grace: float | None = None) -> ExitStatus:
        """``signal``, then SIGKILL after ``grace`` seconds if anything is left; the exit status."""
        params: dict[str, Any] = {"proc": proc, "signal": signal_param(signal)}
        if grace is not None:
            params["grace"] = grace
        return ExitStatus.from_json(self.call("stop", params))

    def wait(self, proc: int, timeout: float | None = None) -> ExitStatus:
        """Wait on the server (any process of this token); :class:`Timeout` when it runs on."""
        params: dict[str, Any] = {"proc": proc}
        if timeout is not None:
            params["timeout"] = timeout
        return ExitStatus.from_json(self.call("wait", params))

    def resize(self, proc: int, rows: int, cols: int) -> None:
        """Set the window size of a process started with a pty."""
        self.call("resize", {"proc": proc, "rows": rows, "cols": cols})

    def detach(self, proc: int) -> None:
        """Stop receiving ``proc``'s output on this connection; the process goes on."""
        self.call("detach", {"proc": proc})
        with self._lock:
            process = self._procs.pop(proc, None)
        if process is not None:
            process._detached()

    def start(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str | None] | None = None,
        clear_env: bool = False,
        cwd: str | os.PathLike[str] | None = None,
        stdin: str = "pipe",
        stderr: str = "pipe",
        timeout: float | None = None,
        encoding: str = "text",
        binary: bool = False,
        name: str | None = None,
        pty: Any = None,
        on_disconnect: str | None = None,
        buffer: int | None = None,
        command: str | None = None,
    ) -> Process:
        """Start a process; read its output by iterating over the returned :class:`Process`.

        ``pty``: ``True`` (24x80), ``(rows, cols)`` or ``{"rows": r, "cols": c}``
        runs it on a pseudo-terminal.  ``binary=True`` has the output sent as
        binary frames (no JSON or base64 on the way).  ``on_disconnect="keep"``
        lets it outlive this connection (see :meth:`attach`).  ``command`` is
        what ``list`` shows as its command line (default: ``shlex.join(argv)``).
        """
        params = _spawn_params(argv, env, clear_env, cwd, stdin, stderr, timeout, encoding, name)
        if binary:
            params["binary"] = True
        if pty is not None and pty is not False:
            rows, cols = _pty_size(pty)
            params["pty"] = {"rows": rows, "cols": cols}
        if on_disconnect is not None:
            params["on_disconnect"] = on_disconnect
        if buffer is not None:
            params["buffer"] = buffer
        if command is not None:
            params["command"] = command
        started: list[Process] = []

        def route(call: _Call) -> None:  # in the reader thread, before any output of it
            if call.error is None:
                result = call.result
                process = Process(
                    self, result["proc"], pid=result.get("pid"), pgid=result.get("pgid"), pty="pty" in params
                )
                self._route(process)
                started.append(process)

        self._request("start", params, route).get()
        return started[0]

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | str | None = None,
        env: Mapping[str, str | None] | None = None,
        clear_env: bool = False,
        cwd: str | os.PathLike[str] | None = None,
        stdin: str = "pipe",
        stderr: str = "pipe",
        timeout: float | None = None,
        encoding: str = "text",
        name: str | None = None,
        max_output: int | None = None,
    ) -> Result:
        """Run a process to its end: feed ``input``, collect its output (at most
        ``max_output`` bytes per stream, 16 MiB by default), return a :class:`Result`.

        ``encoding`` is how the output travels (``"text"`` or ``"base64"``); the
        result holds bytes either way.  An ``input`` too large for one message is
        streamed through :meth:`start` instead, with the same result.
        """
        params = _spawn_params(argv, env, clear_env, cwd, stdin, stderr, timeout, encoding, name)
        data = input.encode("utf-8") if isinstance(input, str) else (bytes(input) if input is not None else None)
        if max_output is not None:
            params["max_output"] = max_output
        if data is not None and stdin == "null":
            raise InvalidParams("Invalid params: input: cannot be given with stdin: null")
        if data is not None:
            inline = _data_param(data, self.max_message_bytes, "input", "input_encoding")
            if sum(len(value) for value in inline.values()) + JSON_SLACK > self.max_message_bytes:
                return self._run_streamed(params, data)
            params.update(inline)
        return Result.from_json(self.call("run", params))

    def _run_streamed(self, params: dict[str, Any], data: bytes) -> Result:
        limit = params.pop("max_output", DEFAULT_RUN_MAX_OUTPUT)
        process = self.start(**params)
        kept = {"stdout": bytearray(), "stderr": bytearray()}
        truncated = {"stdout": False, "stderr": False}
        feeder = threading.Thread(target=_feed, args=(process, data), name="procwire-run-input", daemon=True)
        feeder.start()
        for stream, chunk in process:
            room = limit - len(kept[stream])
            if len(chunk) > room:
                truncated[stream] = True
            kept[stream] += chunk[: max(room, 0)]
        feeder.join()
        status = process.exit_status
        assert status is not None
        with contextlib.suppress(ProcwireError):
            process.release()
        return Result(**vars(status), stdout=bytes(kept["stdout"]), stderr=bytes(kept["stderr"]), truncated=truncated)

    def attach(
        self,
        proc: int,
        offset: int | Mapping[str, int] | None = None,
        *,
        binary: bool | None = None,
        encoding: str | None = None,
        snapshot: bool = False,
    ) -> Process:
        """Receive a process's output on this connection (a kept one, typically).

        The server first replays what its buffer holds from ``offset`` (one
        number for stdout, or ``{"stdout": n, "stderr": m}``), then streams live
        output, then the exit.  ``process.attachment`` holds the answer
        (current offsets, ``truncated`` when bytes before ``offset`` are gone).
        ``binary``/``encoding`` choose how this connection receives the output
        (default: as the process's starting connection chose).  With
        ``snapshot=True`` a process on a pty sends its current screen instead of
        the replay: iterating yields it first as ``("screen", bytes)`` (ANSI that
        repaints the whole screen), then the live output.
        """
        params: dict[str, Any] = {"proc": proc}
        if offset is not None:
            params["offset"] = offset if isinstance(offset, int) else dict(offset)
        if binary is not None:
            params["binary"] = binary
        if encoding is not None:
            params["encoding"] = encoding
        if snapshot:
            params["snapshot"] = True
        process = Process(self, proc)
        if isinstance(offset, int):
            process.offsets["stdout"] = offset
        elif offset is not None:
            process.offsets.update(offset)
        previous = self._route(process)

        def attached(call: _Call) -> None:  # in the reader thread, before the replay
            if call.error is None:
                process._attached(Attachment.from_json(call.result))

        try:
            self._request("attach", params, attached).get()
        except BaseException:
            self._unroute(process)
            if previous is not None:
                self._route(previous)
            raise
        if previous is not None:
            previous._detached()  # its output now goes to the new handle
        return process


def _feed(process: Process, data: bytes) -> None:
    """Write ``data`` and close stdin; a child that stops reading is not an error."""
    try:
        process.write(data)
        process.close_stdin()
    except (ProcwireError, ProcwireConnectionError):
        pass
    process._stdin_error = None


def _spawn_params(
    argv: Sequence[str],
    env: Mapping[str, str | None] | None,
    clear_env: bool,
    cwd: str | os.PathLike[str] | None,
    stdin: str,
    stderr: str,
    timeout: float | None,
    encoding: str,
    name: str | None,
) -> dict[str, Any]:
    if isinstance(argv, str | bytes):
        raise TypeError("argv is a list of strings, such as ['sh', '-c', 'echo hi']")
    params: dict[str, Any] = {"argv": [os.fspath(arg) for arg in argv]}
    if env:
        params["env"] = dict(env)
    if clear_env:
        params["clear_env"] = True
    if cwd is not None:
        params["cwd"] = os.fspath(cwd)
    if stdin != "pipe":
        params["stdin"] = stdin
    if stderr != "pipe":
        params["stderr"] = stderr
    if timeout is not None:
        params["timeout"] = timeout
    if encoding != "text":
        params["encoding"] = encoding
    if name is not None:
        params["name"] = name
    return params


def _pty_size(pty: Any) -> tuple[int, int]:
    if pty is True:
        return 24, 80
    if isinstance(pty, Mapping):
        return int(pty["rows"]), int(pty["cols"])
    rows, cols = pty
    return int(rows), int(cols)


# -- processes ------------------------------------------------------------------------


class Process:
    """A process started (or attached to) by a :class:`Client`.

    Iterate over it for its output: ``for stream, data in process`` yields
    ``("stdout" | "stderr", bytes)`` until the process exits (then the
    exit status is in :attr:`exit_status`).  Stdin writes are pipelined: a
    :meth:`write` returns once its bytes are sent, waiting only while more
    than the window of earlier bytes is unanswered; a write the server
    refused is raised by the next :meth:`write`, :meth:`flush`,
    :meth:`close_stdin` or :meth:`wait`.
    """

    def __init__(
        self, client: Client, proc: int, *, pid: int | None = None, pgid: int | None = None, pty: bool = False
    ) -> None:
        self.client = client
        self.proc = proc
        self.pid = pid
        self.pgid = pgid
        self.pty = pty
        self.attachment: Attachment | None = None
        self.offsets: dict[str, int] = {"stdout": 0, "stderr": 0}  # end of what arrived, per stream
        self._items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._ended = threading.Event()  # exit, detach or connection lost
        self._status: ExitStatus | None = None
        self._lost: ProcwireConnectionError | None = None
        self._is_detached = False
        self._drained = False
        self._write_lock = threading.Lock()  # one writer at a time: chunks stay in order
        self._flow = threading.Condition()
        self._in_flight = 0
        self._stdin_error: ProcwireError | None = None
        self.stdin_error: ProcwireError | None = None  # the last refused write, kept for inspection

    def __repr__(self) -> str:
        if self._status is not None:
            state = f"exited {self._status.exit_code}"
        else:
            state = "detached" if self._is_detached else "running"
        return f"<Process proc={self.proc} pid={self.pid} {state}>"

    # -- from the reader thread ---------------------------------------------------

    def _output(self, stream: str, data: bytes, offset: int | None) -> None:
        start = self.offsets.get(stream, 0) if offset is None else offset
        self.offsets[stream] = start + len(data)
        if data:
            self._items.put((stream, data))

    def _screen(self, data: bytes, offset: int) -> None:
        """The current screen of a pty process; the live output goes on from ``offset``."""
        self.offsets["stdout"] = offset
        self._items.put(("screen", data))

    def _exited(self, status: ExitStatus) -> None:
        self._status = status
        self._finish()

    def _connection_lost(self, error: ProcwireConnectionError) -> None:
        if not self._ended.is_set():
            self._lost = error
        self._finish()

    def _detached(self) -> None:
        if not self._ended.is_set():
            self._is_detached = True
        self._finish()

    def _attached(self, attachment: Attachment) -> None:
        self.attachment = attachment
        replay_from = attachment.extra.get("replay_from")
        if isinstance(replay_from, dict):
            self.offsets.update({k: v for k, v in replay_from.items() if isinstance(v, int)})

    def _finish(self) -> None:
        if not self._ended.is_set():
            self._ended.set()
            self._items.put(_END)
        with self._flow:
            self._flow.notify_all()

    def _stdin_failed(self, error: ProcwireError) -> None:
        with self._flow:
            self.stdin_error = error
            if self._stdin_error is None:
                self._stdin_error = error
            self._flow.notify_all()

    # -- state --------------------------------------------------------------------------

    @property
    def exit_status(self) -> ExitStatus | None:
        """The exit status once the ``exit`` arrived, else ``None``."""
        return self._status

    @property
    def returncode(self) -> int | None:
        return None if self._status is None else self._status.returncode

    @property
    def running(self) -> bool:
        return not self._ended.is_set()

    # -- output -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        return self.iter_output()

    def iter_output(self, timeout: float | None = None) -> Iterator[tuple[str, bytes]]:
        """``(stream, bytes)`` as they arrive, until the exit (or a detach).

        ``timeout`` bounds the whole iteration (:class:`Timeout`); a lost
        connection raises :class:`ProcwireConnectionError` after the output
        that did arrive.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._drained:
            try:
                item = self._items.get(timeout=_remaining(deadline))
            except queue.Empty:
                raise Timeout(f"process {self.proc} did not finish its output within {timeout} s") from None
            if item is _END:
                self._drained = True
                break
            yield item
        if self._lost is not None:
            raise self.client._lost()

    def communicate(self, input: bytes | str | None = None, timeout: float | None = None) -> tuple[bytes, bytes]:
        """Write ``input`` (if any) and close stdin, then collect all output until the exit."""
        if input is not None:
            feeder = threading.Thread(target=_feed, args=(self, _as_bytes(input)), daemon=True)
            feeder.start()
        elif not self.pty:
            with contextlib.suppress(ProcessExited):
                self.close_stdin()
        collected = {"stdout": bytearray(), "stderr": bytearray()}
        for stream, data in self.iter_output(timeout):
            collected[stream] += data
        return bytes(collected["stdout"]), bytes(collected["stderr"])

    def wait(self, timeout: float | None = None) -> ExitStatus:
        """The exit status, once the process exited and all its output arrived.

        Raises :class:`Timeout` when ``timeout`` passes first (the process runs
        on), a refused stdin write not raised yet, or the connection error.
        After :meth:`detach` it waits on the server instead.
        """
        self._raise_stdin_error()
        if self._is_detached:
            return self.client.wait(self.proc, timeout)
        if not self._ended.wait(timeout):
            raise Timeout(f"process {self.proc} is still running after {timeout} s")
        if self._status is None:
            if self._is_detached:
                return self.client.wait(self.proc, timeout)
            raise self.client._lost()
        self._raise_stdin_error()
        return self._status

    # -- stdin --------------------------------------------------------------------------

    def _raise_stdin_error(self) -> None:
        with self._flow:
            error, self._stdin_error = self._stdin_error, None
        if error is not None:
            raise error

    def write(self, data: bytes | str, *, timeout: float | None = None, binary: bool = False) -> int:
        """Send bytes (a ``str`` as UTF-8) to the process's stdin; the number of bytes.

        Large data is split in chunks of at most the server's ``max_stdin_chunk``.
        ``binary=True`` sends them as binary stdin frames (no JSON, no base64).
        """
        payload = _as_bytes(data)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._write_lock:
            self._raise_stdin_error()
            step = self.client.write_chunk
            if binary:
                step = min(step, self.client.max_message_bytes - BINARY_HEADER.size)
            unconfirmed = 0
            for start in range(0, len(payload), step):
                chunk = payload[start : start + step]
                if binary and unconfirmed and unconfirmed + len(chunk) > self.client.write_window // 2:
                    self._send_chunk(b"", released=unconfirmed)
                    unconfirmed = 0
                self._reserve(len(chunk), deadline, timeout)
                if binary:
                    self._send_binary_chunk(chunk)
                    unconfirmed += len(chunk)
                else:
                    self._send_chunk(chunk)
            if unconfirmed:
                self._send_chunk(b"", released=unconfirmed)
        return len(payload)

    def _send_binary_chunk(self, chunk: bytes) -> None:
        """One binary stdin frame: never answered; the empty ``write`` that follows
        is answered once its bytes are in the pipe (writes keep their order)."""
        self.client._last_writer = weakref.ref(self)
        self.client._send_frame(BINARY_HEADER.pack(0, self.proc) + chunk, ABNF.OPCODE_BINARY)

    def _reserve(self, size: int, deadline: float | None, timeout: float | None) -> None:
        """Wait until ``size`` more unanswered bytes stay within the window.

        The server takes a write to an empty queue whole and refuses one that
        would take its queue past ``STDIN_BUFFER_BYTES``: keeping the
        unanswered bytes (the next write included) within that bound means it
        never refuses for lack of room.
        """
        window = self.client.write_window
        with self._flow:
            while self._in_flight and self._in_flight + size > window and self._stdin_error is None:
                if self.client.closed:
                    raise self.client._lost()
                if not self._flow.wait(_remaining(deadline)):
                    raise Timeout(f"process {self.proc} did not read its stdin within {timeout} s")
            if self._stdin_error is not None:
                error, self._stdin_error = self._stdin_error, None
                raise error
            self._in_flight += size

    def _send_chunk(self, chunk: bytes, released: int = 0) -> None:
        """A ``write`` request; its answer frees its bytes (and ``released`` earlier ones) from the window."""
        size = len(chunk) + released

        def answered(call: _Call) -> None:  # in the reader thread
            with self._flow:
                self._in_flight -= size
                if isinstance(call.error, ProcwireError):
                    self.stdin_error = call.error
                    if self._stdin_error is None:
                        self._stdin_error = call.error
                self._flow.notify_all()

        params = {"proc": self.proc, **_data_param(chunk, self.client.max_message_bytes)}
        self.client._last_writer = weakref.ref(self)
        self.client._request("write", params, answered)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every write was answered; raise the first refused one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._flow:
            while self._in_flight and not self.client.closed:
                if not self._flow.wait(_remaining(deadline)):
                    raise Timeout(f"process {self.proc} did not read its stdin within {timeout} s")
        self._raise_stdin_error()

    def close_stdin(self) -> None:
        """End of file on stdin, after the bytes written before (on a pty: ^D)."""
        with self._write_lock:
            self._raise_stdin_error()
            self.client.call("close_stdin", {"proc": self.proc})
            with contextlib.suppress(Timeout):
                self.flush(timeout=5.0)

    # -- control ------------------------------------------------------------------------

    def signal(self, sig: Any, *, group: bool = True) -> None:
        self.client.signal(self.proc, sig, group=group)

    def kill(self) -> None:
        self.client.kill(self.proc)

    def stop(self, signal: Any = "SIGTERM", grace: float | None = None) -> ExitStatus:
        return self.client.stop(self.proc, signal, grace)

    def resize(self, rows: int, cols: int) -> None:
        self.client.resize(self.proc, rows, cols)

    def detach(self) -> None:
        """Stop receiving the output here (iteration ends); the process runs on."""
        self.client.detach(self.proc)
        self.client._unroute(self)
        self._detached()

    def release(self) -> None:
        """Forget the exited process on the server."""
        self.client.release(self.proc)

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        """Kill the process if it still runs (and wait a little for its exit)."""
        if self._ended.is_set() or self.client.closed:
            return
        try:
            self.kill()
            self._ended.wait(10.0)
        except (ProcwireError, ProcwireConnectionError):
            pass


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)
