"""The JSON-RPC methods: each validates nothing itself (``params`` did) and
acts on processes through :mod:`app.process`.

A handler returns the result, or an AsyncResult when the answer
must wait (``write`` until the bytes are in the pipe, ``wait``, ``stop``,
``run``) so that the connection's reader never blocks on a process.
"""

from __future__ import annotations

import base64
import errno
import os
import shlex
import signal
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gevent.event import AsyncResult

from app import metrics, recording
from app.deferred import deferred
from app.errors import ErrorCode, RpcError
from app.processes.environment import child_environment, server_environment
from app.processes.launcher import NOT_IN_PATH, LaunchSpec, lookpath
from app.processes.options import Options
from app.processes.process import Process
from app.processes.sinks import Source
from app.protocol import access
from app.protocol import params as P
from app.protocol.output import OutputFormat
from app.security.start_gate import Admission, admitted, record_signal, record_start

if TYPE_CHECKING:
    from app.processes.sinks import OutputSink
    from app.protocol.caller import Caller
    from app.recording.recorder import Recorder

Handler = Callable[["Caller", Any], Any]
FastHandler = Callable[["Caller", dict[str, Any]], Any]
DEFAULT_TERM = "xterm-256color"
SHOWN_NAME = 200  # characters of a client's name that an error message repeats


@dataclass(frozen=True)
class Method:
    params: type[P.Params]
    handler: Handler
    fast: FastHandler | None = None  # the raw params' commonest shape, checked by hand; NotImplemented otherwise

    def call(self, caller: Caller, raw: dict[str, Any]) -> Any:
        if self.fast is not None and (result := self.fast(caller, raw)) is not NotImplemented:
            return result
        return self.handler(caller, P.validate(self.params, raw))


METHODS: dict[str, Method] = {}


def method(name: str, params: type[P.Params], fast: FastHandler | None = None) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        METHODS[name] = Method(params, handler, fast)
        return handler

    return register


def shown(name: str) -> str:
    """A client's name as an error repeats it: whole up to ``SHOWN_NAME`` characters, else cut and measured."""
    if len(name) <= SHOWN_NAME:
        return name
    return f"{name[:SHOWN_NAME]}... ({len(name):,} characters)"


def os_error(error: OSError) -> RpcError:
    """Map an OSError from resolving or starting a program to a protocol error."""
    name = shown(str(error.filename)) if error.filename is not None else None
    data = {"errno": error.errno, "filename": name}
    if isinstance(error, FileNotFoundError):
        where = " in PATH" if error.strerror == NOT_IN_PATH else ""
        return RpcError(ErrorCode.NOT_FOUND, f"executable not found{where}: {name}", data)
    text = f"{name}: {error.strerror}" if name is not None else str(error.strerror)
    if isinstance(error, PermissionError | NotADirectoryError):
        return RpcError(ErrorCode.PERMISSION_DENIED, f"permission denied: {text}", data)
    return RpcError(ErrorCode.SPAWN_FAILED, f"cannot start: {text}", data)


@method("lookpath", P.LookpathParams)
def _lookpath(caller: Caller, params: P.LookpathParams) -> dict[str, Any]:
    try:
        return {"path": lookpath(params.file, server_environment().get("PATH"))}
    except OSError as error:
        raise os_error(error) from None


def spawn(
    caller: Caller,
    params: P.SpawnParams,
    sink: OutputSink,
    options: Options,
    pty: tuple[int, int] | None = None,
) -> Process:
    """Start a process for this client, within its limits."""
    settings = caller.settings
    if len(caller.client.running) >= settings.MAX_PROCS_PER_CLIENT:
        raise RpcError(
            ErrorCode.LIMIT_EXCEEDED, f"too many processes: this client already runs {settings.MAX_PROCS_PER_CLIENT}"
        )
    changes = {"TERM": DEFAULT_TERM, **params.env} if pty is not None else params.env
    env = child_environment(changes, params.clear_env)
    cwd = checked_cwd(params.cwd)
    try:
        executable = lookpath(params.argv[0], env.get("PATH"), cwd)
        with admitted(caller, params, executable, cwd, pty is not None, options) as admission:
            spec = LaunchSpec(params.argv, executable, env, cwd, params.stdin, params.stderr, pty, **admission.launch)
            proc_id = caller.registry.next_proc_id()
            recorder = _recorder(caller, params, admission, proc_id, pty)
            try:
                with metrics.SPAWN_SECONDS.time():
                    process = Process(proc_id, spec, sink=sink, limits=caller.limits, options=admission.options)
                process.recording = recorder.id if recorder is not None else None
            except BaseException:
                if recorder is not None:
                    recorder.discard()
                raise
    except OSError as error:
        raise os_error(error) from None
    caller.registry.add_process(  # nothing yields since the reservation ended: the counts stay exact
        caller.client,
        process,
        keep_exited=settings.MAX_EXITED_PER_CLIENT,
        keep_seconds=settings.KEEP_EXITED_SECONDS,
    )
    record_start(caller, params, process, executable)
    if recorder is not None:
        recorder.attach(process, caller.registry.node)
    return process


def _recorder(
    caller: Caller, params: P.SpawnParams, admission: Admission, proc: int, pty: tuple[int, int] | None
) -> Recorder | None:
    """A recording, if the start asks for one or the policy requires it (app.recording)."""
    record, inputs = recording.wanted(params.record, admission.record, admission.record_input)
    if not record:
        return None
    command = params.command or shlex.join(params.argv)
    return recording.begin(caller.settings, caller.client.owner, proc, command, pty, inputs=inputs)


def checked_cwd(cwd: str | None) -> str | None:
    """Refuse a missing or unreachable ``cwd`` before forking, with a clear errno."""
    if cwd is None:
        return None
    try:
        if not stat.S_ISDIR(os.stat(cwd).st_mode):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), cwd)
        if not os.access(cwd, os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), cwd)
    except OSError as error:
        raise RpcError(
            ErrorCode.PERMISSION_DENIED,
            f"cwd {shown(cwd)!r} is not usable: {error.strerror}",
            {"errno": error.errno, "filename": shown(cwd), "field": "cwd"},
        ) from None
    return cwd


@method("start", P.StartParams)
def _start(caller: Caller, params: P.StartParams) -> dict[str, Any]:
    keep = params.on_disconnect == "keep"
    history_bytes = _history_bytes(caller, params.buffer, keep)
    options = spawn_options(
        caller, params, binary=params.binary, keep=keep, history_bytes=history_bytes, size_rule=params.size_rule
    )
    pty = (params.pty.rows, params.pty.cols) if params.pty else None
    process = spawn(caller, params, caller.subscriber, options, pty)
    caller.subscriber.subscribed(process)
    if pty is not None:
        caller.sized(process, pty)  # the starter's size counts as its first resize
    caller.after_reply(process.begin_output)
    answer = {"proc": process.id, "pid": process.pid, "pgid": process.pgid}
    return dict(answer, recording=process.recording) if process.recording else answer


def spawn_options(caller: Caller, params: P.SpawnParams, **more: Any) -> Options:
    """What ``start`` and ``run`` tell a process about itself; ``more`` is start's own."""
    return Options(
        owner=caller.client.owner,
        name=params.name,
        command=params.command,
        encoding=params.encoding,
        timeout=params.timeout,
        **more,
    )


def _history_bytes(caller: Caller, requested: int | None, keep: bool) -> int:
    """Kept processes record their output by default; others only when asked."""
    settings = caller.settings
    if requested is None:
        return settings.DEFAULT_BUFFER_BYTES if keep else 0
    if requested > settings.MAX_BUFFER_BYTES:
        raise RpcError(ErrorCode.INVALID_PARAMS, f"Invalid params: buffer: at most {settings.MAX_BUFFER_BYTES}")
    return requested


@method("resize", P.ResizeParams)
def _resize(caller: Caller, params: P.ResizeParams) -> Any:
    return caller.resize(caller.lookup(params.proc), params.rows, params.cols)


@method("attach", P.AttachParams)
def _attach(caller: Caller, params: P.AttachParams) -> dict[str, Any]:
    process = caller.lookup(params.proc)
    output_format = OutputFormat.chosen(process, params.binary, params.encoding)
    mode = access.attach_mode(caller, process.id, params.mode)
    return caller.attach(process, params.offsets(), output_format, params.snapshot, mode)


@method("detach", P.ProcParams)
def _detach(caller: Caller, params: P.ProcParams) -> dict[str, Any]:
    caller.detach(caller.lookup(params.proc))
    return {}


def _plain_write(caller: Caller, raw: dict[str, Any]) -> Any:
    """``{"proc": n, "data": "text"}``, every keystroke of an interactive session:
    checked here as :class:`~app.protocol.params.WriteParams` would check it, without
    building the model (its validation was a tenth of the worker's time per echo)."""
    proc, data = raw.get("proc"), raw.get("data")
    if len(raw) != 2 or type(proc) is not int or proc <= 0 or type(data) is not str:
        return NotImplemented
    return write_stdin(caller, proc, data.encode("utf-8"))


@method("write", P.WriteParams, fast=_plain_write)
def _write(caller: Caller, params: P.WriteParams) -> Any:
    try:
        data = P.decode_data(params.data, params.encoding)
    except RpcError as error:
        error.refused_data = True
        raise
    return write_stdin(caller, params.proc, data)


def write_stdin(caller: Caller, proc: int, data: bytes) -> Any:
    """Queue ``data`` for the process's stdin (a ``write`` or a binary stdin frame).

    Every refusal is marked ``refused_data`` and names the process in
    ``data.proc``: the client hears of it even when the write was a
    notification (answered with id null), so no byte vanishes unannounced.
    """
    try:
        process = caller.lookup(proc)
        if len(data) > caller.settings.MAX_STDIN_CHUNK:
            raise RpcError(
                ErrorCode.LIMIT_EXCEEDED,
                f"stdin chunk too large: {len(data)} bytes, at most {caller.settings.MAX_STDIN_CHUNK}",
            )
        written = process.write_stdin(data)
    except RpcError as error:
        raise _refused(error, proc) from None
    if isinstance(written, AsyncResult):

        def name_the_process(done: AsyncResult) -> None:
            if done.exception is not None:
                _refused(done.exception, proc)

        written.rawlink(name_the_process)
    return written


def _refused(error: BaseException, proc: int) -> BaseException:
    if isinstance(error, RpcError):
        error.refused_data = True
        error.data = {**(error.data or {}), "proc": proc}
    return error


@method("close_stdin", P.ProcParams)
def _close_stdin(caller: Caller, params: P.ProcParams) -> Any:
    return caller.lookup(params.proc).close_stdin()


@method("signal", P.SignalParams)
def _signal(caller: Caller, params: P.SignalParams) -> dict[str, Any]:
    process = caller.lookup(params.proc)
    answer = process.send_signal(params.signal, params.group)
    record_signal(caller, process, "signal", params.signal, params.group)
    return answer


@method("kill", P.ProcParams)
def _kill(caller: Caller, params: P.ProcParams) -> dict[str, Any]:
    process = caller.lookup(params.proc)
    answer = process.send_signal(signal.SIGKILL, group=True)
    record_signal(caller, process, "kill", signal.SIGKILL, True)
    return answer


@method("stop", P.StopParams)
def _stop(caller: Caller, params: P.StopParams) -> Any:
    process = caller.lookup(params.proc)
    record_signal(caller, process, "stop", params.signal, True)
    return deferred(process.stop, params.signal, params.grace)


@method("wait", P.WaitParams)
def _wait(caller: Caller, params: P.WaitParams) -> Any:
    process = caller.lookup(params.proc)
    return deferred(process.wait, params.timeout)


@method("list", P.NoParams)
def _list(caller: Caller, params: P.NoParams) -> dict[str, Any]:
    return caller.registry.visible_to(caller.identity)


@method("find", P.FindParams)
def _find(caller: Caller, params: P.FindParams) -> dict[str, Any]:
    return access.found(caller, caller.registry.find(caller.identity, params.pid))


@method("release", P.ProcParams)
def _release(caller: Caller, params: P.ProcParams) -> dict[str, Any]:
    return caller.registry.release(caller.identity, params.proc)


@method("ping", P.NoParams)
def _ping(caller: Caller, params: P.NoParams) -> dict[str, Any]:
    return {"time": time.time()}


class Collector:
    """The sink of ``run``: keeps up to ``limit`` bytes per stream, drops the rest."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.data = {"stdout": bytearray(), "stderr": bytearray()}
        self.truncated = {"stdout": False, "stderr": False}

    def output(self, process: Source, stream: str, data: bytes, offset: int) -> None:
        kept = self.data[stream]
        room = self._limit - len(kept)
        if len(data) > room:
            self.truncated[stream] = True
        kept += data[: max(room, 0)]

    def end_of_stream(self, process: Source, stream: str) -> None:
        pass

    def exited(self, process: Source) -> None:
        pass

    def result(self, encoding: str) -> dict[str, Any]:
        if encoding == "text":
            try:
                texts = {stream: bytes(kept).decode("utf-8") for stream, kept in self.data.items()}
                return dict(texts, encoding="text", truncated=self.truncated)
            except UnicodeDecodeError:
                pass
        encoded = {stream: base64.b64encode(kept).decode("ascii") for stream, kept in self.data.items()}
        return dict(encoded, encoding="base64", truncated=self.truncated)


@method("run", P.RunParams)
def _run(caller: Caller, params: P.RunParams) -> Any:
    if params.input is not None and params.stdin == "null":
        raise RpcError(ErrorCode.INVALID_PARAMS, "Invalid params: input: cannot be given with stdin: null")
    data = P.decode_data(params.input, params.input_encoding, "input") if params.input is not None else b""
    collector = Collector(params.max_output)
    process = spawn(caller, params, collector, spawn_options(caller, params))
    process.begin_output()
    return deferred(_finish_run, caller, process, collector, data, params.encoding)


def _finish_run(caller: Caller, process: Process, collector: Collector, data: bytes, encoding: str) -> Any:
    """Feed the input, close stdin, wait; a child that ignores its input is fine."""
    try:
        if process.stdin is not None:
            try:
                if data:
                    process.stdin.write(data)
                process.stdin.close()
            except RpcError:
                pass  # the child exited or closed its stdin before reading it all
        status = process.wait()
    finally:
        caller.registry.forget(process.id)
    return dict(status, **collector.result(encoding))
