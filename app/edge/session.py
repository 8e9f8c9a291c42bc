"""One WebSocket connection: frames in, methods run, answers and notifications out.

The session is also the :class:`~app.process.OutputSink` of the processes it
starts: it turns their bytes into ``output`` notifications and announces
their ``exit``.  When the connection ends, for whatever reason, every
process it started is stopped (SIGTERM to the group, SIGKILL after
``KILL_GRACE``) and the client leaves the registry.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeAlias

import gevent
from gevent.event import AsyncResult
from simple_websocket import ConnectionClosed

from app import metrics
from app.edge.keepalive import keepalive
from app.edge.subscriber import Subscriber
from app.edge.wire import Link
from app.errors import ErrorCode, RpcError
from app.processes.options import Limits
from app.processes.process import Process
from app.protocol import access, sharing  # noqa: F401  (sharing registers share and unshare)
from app.protocol import jsonrpc as protocol
from app.protocol.access import VIEWERS
from app.protocol.jsonrpc import Call
from app.protocol.methods import METHODS, write_stdin
from app.protocol.output import OutputFormat
from app.registry.base import Answer, Client, ProcessHandle, Registry
from app.security.identity import Identity
from app.security.ratelimit import MessageLimiter, Verdict
from app.security.shares import VIEW, Shares
from app.version import PROTOCOL_VERSION, __version__
from config import Settings

log = logging.getLogger(__name__)

Pending: TypeAlias = AsyncResult
CLOSE_INTERNAL_ERROR = 1011
CLOSE_POLICY_VIOLATION = 1008


class Session:
    def __init__(
        self,
        ws: Any,
        *,
        identity: Identity,
        remote_addr: str | None,
        settings: Settings,
        registry: Registry,
        shares: Shares,
    ) -> None:
        self.link = Link(ws, settings.COMPRESSION)  # first: every later write is serialised
        self.settings = settings
        self.registry = registry
        self.limits = Limits(settings.KILL_GRACE, settings.DRAIN_TIMEOUT, settings.STDIN_BUFFER_BYTES)
        self.identity = identity
        self.client = Client(owner=identity.name, remote_addr=remote_addr, close=self.link.close)
        rate = settings.MAX_MESSAGES_PER_SECOND
        self.limiter = MessageLimiter(rate, settings.MESSAGE_BURST) if rate else None
        self.subscriber = Subscriber(self.notify, self._send_binary)
        self.controller = f"{registry.node}/{self.client.id}"  # as a terminal's size rule names it
        self._sized: dict[int, ProcessHandle] = {}  # the terminals this connection gave a size
        self.shares = shares
        self.modes: dict[int, str] = {}  # of the processes attached here (app/protocol/access.py)
        self._after_reply: list[Callable[[], None]] = []
        self._messages_in = 0

    # -- the connection's life ------------------------------------------------

    def run(self) -> None:
        self.registry.add_client(self.client)
        share = self.identity.share
        self.client.audit("connect", role=self.identity.role, **({"share": share.id} if share else {}))
        if share is not None:
            self.shares.watch.follow(share, self.client.id, self.client.close)
        VIEWERS.join(self)
        metrics.CONNECTIONS.inc()
        metrics.CONNECTIONS_OPEN.inc()
        log.info("client %s connected from %s", self.client.id, self.client.remote_addr)
        keepalive.watch(self.link, self.settings.PING_INTERVAL)
        try:
            self.notify("hello", self._hello())
            while True:
                self.handle_frame(self.link.receive())
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("client %s: connection failed", self.client.id)
            self.link.close(CLOSE_INTERNAL_ERROR, "internal error")
        finally:
            keepalive.forget(self.link)
            self.link.hang_up()  # the client need not wait while its processes are stopped
            self.link.release()
            received = list(self.subscriber.processes.values())
            self._stop_processes()
            VIEWERS.leave(self, received)
            if share is not None:
                self.shares.watch.forget(share, self.client.id)
            self.registry.remove_client(self.client)
            self.client.audit("disconnect", duration=round(time.time() - self.client.connected_at, 3))
            metrics.CONNECTIONS_OPEN.dec()
            self._log_session_end()
            self.link.linger()

    def _log_session_end(self) -> None:
        """One line per WebSocket session (gunicorn writes no access line for it)."""
        ws = self.link.ws
        fields = {
            "client": self.client.id,
            "remote_addr": self.client.remote_addr,
            "duration": round(time.time() - self.client.connected_at, 3),
            "messages_in": self._messages_in,
            "processes_started": self.client.processes_started,
            "close_code": int(ws.close_reason) if ws.close_reason is not None else None,
        }
        log.info("session ended %s", " ".join(f"{key}={value}" for key, value in fields.items()), extra=fields)

    def _hello(self) -> dict[str, Any]:
        return {
            "server": "procwire",
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "client_id": self.client.id,
            "node": self.registry.node,
            "identity": self.identity.hello(),
            "limits": {
                "max_message_bytes": self.settings.MAX_MESSAGE_BYTES,
                "max_stdin_chunk": self.settings.MAX_STDIN_CHUNK,
                "stdin_buffer_bytes": self.settings.STDIN_BUFFER_BYTES,
                "max_procs": self.settings.MAX_PROCS_PER_CLIENT,
                "kill_grace": self.settings.KILL_GRACE,
                "drain_timeout": self.settings.DRAIN_TIMEOUT,
                "ping_interval": self.settings.PING_INTERVAL,
            },
        }

    def _stop_processes(self) -> None:
        """Stop every process this client started, grandchildren included,
        except kept ones, which go on without this connection."""
        self.subscriber.detach_all()
        for proc in list(self._sized):
            self._forget_size(proc)
        started = list(self.client.started.values())
        for process in started:
            process.begin_output()  # a start answer lost with the connection
        # A finished process whose group is gone needs nothing: no greenlets for it.
        doomed = [
            process for process in started if not process.options.keep and (process.running or process.group_alive())
        ]
        gevent.joinall([gevent.spawn(process.terminate) for process in doomed])
        gevent.joinall(
            [gevent.spawn(process.wait) for process in doomed],
            timeout=self.settings.DRAIN_TIMEOUT + 1,
        )

    # -- frames in, answers out -------------------------------------------------

    def handle_frame(self, frame: str | bytes) -> None:
        self._messages_in += 1
        metrics.MESSAGES_IN.add()
        if self.limiter is not None and self._over_rate(frame):
            return
        if isinstance(frame, bytes):
            self._write_binary_stdin(frame)
            return
        message = protocol.parse(frame)
        answers = [self._answer(call) for call in message.calls]
        callbacks, self._after_reply = self._after_reply, []
        if any(isinstance(answer, _PendingAnswer) for answer in answers):
            gevent.spawn(self._deliver_later, message.batch, answers, callbacks)
        else:
            self._deliver(message.batch, answers, callbacks)

    def _over_rate(self, frame: str | bytes) -> bool:
        """Past MAX_MESSAGES_PER_SECOND: answer the frame's requests with -32004
        (refused stdin bytes too), or close with 1008 when it goes on (app.ratelimit)."""
        assert self.limiter is not None
        started_refusing = not self.limiter.refusing
        verdict = self.limiter.check()
        if verdict is Verdict.ACCEPT:
            return False
        rule = "MAX_MESSAGES_PER_SECOND"
        if verdict is Verdict.CLOSE:
            reason = "message rate limit exceeded"
            self.client.audit("close", code=CLOSE_POLICY_VIOLATION, rule=rule, reason=reason)
            self.link.close_for_cause(CLOSE_POLICY_VIOLATION, reason)
        text = f"message rate limit: at most {self.limiter.rate:g} per second, {self.limiter.burst} at once"
        error = RpcError(ErrorCode.LIMIT_EXCEEDED, text, {"rule": rule}, refused_data=True)
        if started_refusing:
            self.client.audit("refused", code=int(error.code), rule=rule, message=text)
        if isinstance(frame, bytes):
            self._send(protocol.failure(None, error))
            return True
        calls = protocol.parse(frame)
        answers = [
            protocol.failure(None if call.is_notification else call.id, error)
            for call in calls.calls
            if not call.is_notification or call.method == "write"
        ]
        self._deliver(calls.batch, answers, [])
        return True

    def _write_binary_stdin(self, frame: bytes) -> None:
        """A binary stdin frame has no id: its errors are answered with id null."""
        try:
            proc, payload = protocol.parse_binary_stdin(frame)
            access.permit(self, "write", {"proc": proc})
            written = write_stdin(self, proc, payload)
        except RpcError as error:
            self._send(_failure(None, error))
            return
        if isinstance(written, AsyncResult):
            written.rawlink(self._report_refused_data)

    def _report_refused_data(self, result: AsyncResult) -> None:
        """A deferred write with no id failed: tell the client (id null), since
        its bytes never reached the process.  Runs in the hub: send from a greenlet."""
        error = result.exception
        if isinstance(error, RpcError) and error.refused_data:
            gevent.spawn(self._send_error_without_id, error)

    def _send_error_without_id(self, error: RpcError) -> None:
        with contextlib.suppress(ConnectionClosed):
            self._send(_failure(None, error))

    def after_reply(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once this frame's answer is on the wire."""
        self._after_reply.append(callback)

    def lookup(self, proc: int) -> ProcessHandle:
        return self.registry.lookup(self.identity, proc)

    def _answer(self, call: Call) -> dict[str, Any] | Pending | None:
        if call.error is not None:
            return None if call.is_notification else _failure(call.id, call.error)
        try:
            method = METHODS.get(call.method)
            if method is None:
                raise RpcError(ErrorCode.METHOD_NOT_FOUND, f"Method not found: {call.method!r}")
            access.permit(self, call.method, call.params)
            result = method.call(self, call.params)
        except Exception as error:
            rpc_error = _as_rpc_error(error, call)
            if call.is_notification:
                return _failure(None, rpc_error) if rpc_error.refused_data else None
            return _failure(call.id, rpc_error)
        if isinstance(result, AsyncResult):
            if call.is_notification:
                result.rawlink(self._report_refused_data)
                return None
            return _PendingAnswer(call, result)
        return None if call.is_notification else protocol.success(call.id, result)

    def _deliver_later(self, batch: bool, answers: list[Any], callbacks: list[Callable[[], None]]) -> None:
        with contextlib.suppress(ConnectionClosed):
            self._deliver(batch, [_resolve(answer) for answer in answers], callbacks)

    def _deliver(self, batch: bool, answers: list[Any], callbacks: list[Callable[[], None]]) -> None:
        present = [answer for answer in answers if answer is not None]
        try:
            if batch and present:
                self._send(present)
            elif present:
                self._send(present[0])
        finally:
            for callback in callbacks:
                callback()

    # -- output ---------------------------------------------------------------------

    def attach(
        self, process: ProcessHandle, offsets: dict[str, int], output_format: OutputFormat, snapshot: bool, mode: str
    ) -> dict[str, Any]:
        answer, replay = self.subscriber.attach(process, offsets, output_format, snapshot)
        self.modes[process.id] = mode
        if mode == VIEW:
            self._forget_size(process.id)  # a viewer may not size the terminal: its old size stops counting
        self.after_reply(replay)
        share = self.identity.share
        self.client.audit("attach", proc=process.id, mode=mode, share=share.id if share else None)
        VIEWERS.changed(process, self)
        return dict(answer, mode=mode)

    def detach(self, process: ProcessHandle) -> None:
        self.subscriber.detach(process)
        self.modes.pop(process.id, None)
        VIEWERS.changed(process, self)
        self._forget_size(process.id)

    def receives(self, proc: int) -> bool:
        return proc in self.subscriber.processes

    # -- terminal sizes ----------------------------------------------------------------

    def resize(self, process: ProcessHandle, rows: int, cols: int) -> Answer:
        answer = process.resize(rows, cols, self.controller)
        self._remember_size(process)
        return answer

    def sized(self, process: Process, size: tuple[int, int]) -> None:
        assert process.window is not None
        process.window.set(self.controller, size)
        self._remember_size(process)

    def _remember_size(self, process: ProcessHandle) -> None:
        """Sizes given to finished processes need no forgetting: let them go."""
        self._sized = {proc: sized for proc, sized in self._sized.items() if sized.running}
        self._sized[process.id] = process

    def _forget_size(self, proc: int) -> None:
        """This connection's size for ``proc`` stops counting (a remote one: asked, not awaited)."""
        process = self._sized.pop(proc, None)
        if process is not None:
            process.forget_size(self.controller)

    def _send_binary(self, header: bytes, payload: bytes) -> None:
        self.link.send_binary(header, payload)

    def notify(self, method: str, params: dict[str, Any]) -> None:
        """Send a notification; once the client is gone, output is discarded."""
        with contextlib.suppress(ConnectionClosed):
            self._send(protocol.notification(method, params))

    def _send(self, message: Any) -> None:
        self.link.send_text(protocol.encode(message))


class _PendingAnswer:
    """An answer whose result is still being computed."""

    def __init__(self, call: Call, result: Pending) -> None:
        self.call = call
        self.result = result


def _resolve(answer: Any) -> Any:
    if not isinstance(answer, _PendingAnswer):
        return answer
    try:
        return protocol.success(answer.call.id, answer.result.get())
    except Exception as error:
        return _failure(answer.call.id, _as_rpc_error(error, answer.call))


def _failure(request_id: Any, error: RpcError) -> dict[str, Any]:
    metrics.ERRORS.labels(int(error.code)).inc()
    return protocol.failure(request_id, error)


def _as_rpc_error(error: Exception, call: Call) -> RpcError:
    if isinstance(error, RpcError):
        return error
    log.error("method %s failed", call.method, exc_info=error)
    return RpcError(ErrorCode.INTERNAL_ERROR, f"Internal error: {type(error).__name__}")
