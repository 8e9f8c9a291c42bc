"""One program connection: the program starts, its output goes out, messages go to its stdin.

The connection's greenlet starts the program, then reads messages and writes
each to stdin (a line in text mode, bytes as they are in binary mode),
waiting while the pipe is full, so that a client that floods meets TCP
backpressure.  The program's pumps send its output
(:class:`~app.programs.output.ProgramOutput`).  Whichever side ends first:

- the program: what is left of its output is sent, then a Close frame
  whose code tells how it ended (:mod:`app.programs.ending`); the
  connection reads on until the client's own Close, ``CLOSE_WAIT`` at most;
- the client: the stop sequence runs on the program's process group.

The program is a process like any other: in ``list`` and
``/api/processes`` under its token's name and the program's name, where an
admin can see and kill it, with the audit's ``start`` and ``exit`` lines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import gevent
from simple_websocket import ConnectionClosed

from app import metrics
from app.edge.keepalive import keepalive
from app.edge.wire import Link
from app.errors import RpcError
from app.processes.environment import Environment, server_environment
from app.processes.launcher import LaunchSpec, lookpath
from app.processes.options import Limits, Options
from app.processes.process import Process
from app.programs import ending
from app.programs.cgi_env import HIDDEN_HEADERS, Request, environ_name, program_environment
from app.programs.gate import Admitted
from app.programs.lines import Message
from app.programs.output import ProgramOutput
from app.protocol.methods import os_error
from app.registry.base import Client, Registry
from app.security.start_gate import record_start
from app.version import __version__
from config import Settings

log = logging.getLogger("procwire.programs")

CLOSE_WAIT = 2.0  # seconds the client has to answer the program's Close with its own
TERMINAL_SIZE = (24, 80)


class ProgramStart:
    """What the audit's start line reads of a program's start (as of a ``start`` request)."""

    def __init__(self, argv: list[str], env: Mapping[str, str]) -> None:
        self.argv = argv
        self.env: dict[str, str | None] = dict(env)
        self.clear_env = True


class ProgramSession:
    """One WebSocket, one program."""

    def __init__(
        self, ws: Any, admitted: Admitted, environ: Mapping[str, Any], settings: Settings, registry: Registry
    ) -> None:
        self.link = Link(ws, settings.COMPRESSION)  # first: every later write is serialised
        self.admitted = admitted
        self.program = admitted.program
        self.identity = admitted.identity
        self.settings = settings
        self.registry = registry
        self.client = Client(owner=self.identity.name, remote_addr=admitted.remote_addr, close=self.link.close)
        self._environ = environ
        self._limits = Limits(settings.KILL_GRACE, settings.DRAIN_TIMEOUT, settings.STDIN_BUFFER_BYTES)
        self._output = ProgramOutput(
            self.program.name, self.program.mode, self.program.stderr, settings.MAX_MESSAGE_BYTES, self._send
        )
        self._input_bytes = metrics.tally(metrics.PROGRAM_INPUT_BYTES, self.program.name)
        self._close_timer: Any = None

    # -- the connection's life ------------------------------------------------------------

    def run(self) -> None:
        self.registry.add_client(self.client)
        self.client.audit("connect", role=self.identity.role, program=self.program.name)
        metrics.CONNECTIONS_OPEN.inc()
        metrics.PROGRAM_CONNECTIONS.labels(self.program.name).inc()
        keepalive.watch(self.link, self.settings.PING_INTERVAL)
        process: Process | None = None
        try:
            process = self._start()
            if process is not None:
                self._pass_input(process)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("program %s: connection failed", self.program.name)
            self.link.close(ending.CLOSE_INTERNAL_ERROR, "internal error")
        finally:
            keepalive.forget(self.link)
            self.link.hang_up()  # the client need not wait for the stop sequence or the bookkeeping
            if process is not None:
                self._end(process)
            if self._close_timer is not None:
                self._close_timer.kill(block=False)
            self.link.release()
            self.registry.remove_client(self.client)
            duration = round(time.time() - self.client.connected_at, 3)
            self.client.audit("disconnect", duration=duration, program=self.program.name)
            metrics.CONNECTIONS_OPEN.dec()

    def _start(self) -> Process | None:
        """Start the program; on failure, close with 1011 and the reason (and audit it)."""
        program = self.program
        argv = self.admitted.argv
        environment = Environment.of(self._environment())
        try:
            executable = lookpath(argv[0], environment.get("PATH"), program.cwd)
            spec = LaunchSpec(
                argv,
                executable,
                environment,
                program.cwd,
                stderr="stdout" if program.stderr == "merge" else "pipe",
                pty=TERMINAL_SIZE if program.pty else None,
                rlimits=dict(program.rlimits),
            )
            options = Options(
                owner=self.identity.name, name=program.name, binary=program.binary, timeout=program.timeout
            )
            process = Process(
                self.registry.next_proc_id(), spec, sink=self._output, limits=self._limits, options=options
            )
        except (OSError, RpcError) as error:
            failure = os_error(error) if isinstance(error, OSError) else error
            code, reason = ending.close_for_spawn_failure(failure)
            self.client.audit("start_failed", program=program.name, argv=argv, message=failure.message)
            log.warning("program %s could not start: %s", program.name, failure.message)
            self.link.close(code, reason)
            return None
        self.registry.add_process(
            self.client,
            process,
            keep_exited=self.settings.MAX_EXITED_PER_CLIENT,
            keep_seconds=self.settings.KEEP_EXITED_SECONDS,
        )
        process.when_finished.append(self._program_exited)  # first: the Close before the exit's audit line
        record_start(
            self, ProgramStart(argv, environment.variables), process, executable, "program", program=program.name
        )
        process.begin_output()
        return process

    def _environment(self) -> dict[str, str]:
        request = Request(
            environ=self._environ,
            script_name=self.admitted.script_name,
            path_info=self.admitted.path_info,
            remote_user=self.identity.name if self.admitted.authenticated else None,
            unique_id=self.client.id,
            software=f"procwire/{__version__}",
            hidden_headers=hidden_headers(self.settings),
        )
        return program_environment(request, server_environment().variables, self.program.passenv, self.program.env)

    # -- messages in ----------------------------------------------------------------------

    def _pass_input(self, process: Process) -> None:
        """Each message to stdin, until the connection ends."""
        newline = b"" if self.program.binary else b"\n"
        while True:
            frame = self.link.receive()
            data = frame.encode("utf-8") if isinstance(frame, str) else frame
            self._write(process, data + newline)

    def _write(self, process: Process, data: bytes) -> None:
        """Write in chunks stdin takes, each once the pipe has room; input past the program's
        own end of stdin (it closed it or exited) has nowhere to go and is counted out in the log."""
        self._input_bytes.add(len(data))
        chunk_size = self.settings.MAX_STDIN_CHUNK
        for start in range(0, len(data), chunk_size):
            try:
                written = process.write_stdin(data[start : start + chunk_size])
                if not isinstance(written, dict):
                    written.get()
            except RpcError as error:
                log.info("program %s: %d bytes of input not written: %s", self.program.name, len(data), error.message)
                return

    # -- output and the end -----------------------------------------------------------------

    def _send(self, message: Message) -> None:
        if isinstance(message, str):
            self.link.send_text(message.encode("utf-8"))
        else:
            self.link.send_binary(b"", message)

    def _program_exited(self, process: Process) -> None:
        """Every byte of output is out: close with the code that tells how the program ended."""
        status = process.status or {}
        metrics.PROGRAM_EXITS.labels(self.program.name, metrics.exit_reason(status)).inc()
        code, reason = ending.close_for_exit(status)
        self.link.send_close(code, reason)
        self._close_timer = gevent.spawn_later(CLOSE_WAIT, self.link.stop_reading)

    def _end(self, process: Process) -> None:
        """The connection is over: a program still running gets its stop sequence."""
        self._output.client_gone = True
        if process.running or process.group_alive():
            sent = ending.run_stop_sequence(process, self.program.stop)
            log.info("program %s: client gone, stop sequence sent %s", self.program.name, sent)
        try:
            process.wait(self.settings.DRAIN_TIMEOUT + 1)
        except RpcError:
            log.warning("program %s: pid %d outlived its stop sequence", self.program.name, process.pid)


def hidden_headers(settings: Settings) -> frozenset[str]:
    """Never to a program: the token, and the secret that makes procwire believe an auth proxy
    (a program holding it could sign in as anyone, app/security/proxy_auth.py)."""
    if settings.AUTH_PROXY is None:
        return HIDDEN_HEADERS
    return HIDDEN_HEADERS | {environ_name(settings.AUTH_PROXY.secret_header)}
