"""The synchronous procwire client: :class:`Client`, one method per protocol method."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from procwire_client.connection import Call
from procwire_client.core.params import (
    DEFAULT_RUN_MAX_OUTPUT,
    as_bytes,
    attach_params,
    run_params,
    share_params,
    spawn_params,
    start_params,
)
from procwire_client.core.resume import output_format
from procwire_client.errors import ProcwireError
from procwire_client.handle import ProcessHandle, process_number
from procwire_client.process import Process, feed_stdin
from procwire_client.results import (
    Attachment,
    ExitStatus,
    OutputCollector,
    ProcessInfo,
    Result,
    Share,
    checked_run_result,
    signal_param,
)
from procwire_client.resuming import ResumingConnection


class Client(ResumingConnection):
    """One connection to a procwire server.

    ``url`` and ``token`` default to ``$PROCWIRE_URL`` (else
    ``ws://127.0.0.1:9999/ws``) and ``$PROCWIRE_TOKEN``.  The token is sent as
    ``Authorization: Bearer``.  Use it as a context manager, or call
    :meth:`close`; closing the connection makes the server stop the processes
    it started (except those started with ``on_disconnect="keep"``).

    ``reconnect=True`` (or a :class:`Reconnect` policy) makes it survive a
    dropped connection: it reconnects and resumes every kept process it was
    following (started with ``on_disconnect="keep"``, or attached) exactly
    where its output stopped; see :mod:`procwire_client.resuming`.

    Every method raises :class:`ProcwireConnectionError` when the connection
    is gone (and :class:`AuthenticationError`, one of them, from the
    constructor when the token is refused); the errors listed per method are
    the server's answers, as :class:`ProcwireError` subclasses.
    """

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ping(self) -> float:
        """The server's Unix time."""
        return self.call("ping")["time"]

    def lookpath(self, file: str | os.PathLike[str]) -> str:
        """Resolve an executable with the server's ``PATH``.

        Raises :class:`NotFound` (not there), :class:`PermissionDenied` (not executable).
        """
        return self.call("lookpath", {"file": os.fspath(file)})["path"]

    def list(self) -> list[ProcessInfo]:
        """The processes of this token: running, and exited ones not yet forgotten."""
        return [ProcessInfo.from_json(info) for info in self.call("list")["processes"]]

    def find(self, pid: int) -> ProcessInfo:
        """The process of this token with this pid; :class:`NoSuchProcess` otherwise."""
        return ProcessInfo.from_json(self.call("find", {"pid": pid}))

    def share(
        self,
        proc: int | ProcessHandle,
        *,
        mode: str = "view",
        expires_in: float | None = None,
        single_use: bool = False,
    ) -> Share:
        """A link that lets its holder watch this process (``mode="control"``: drive it too), and nothing else.

        ``expires_in`` seconds (the server's default: an hour, at most a week);
        ``single_use`` links open one connection.  Only the process's owner or an
        admin may share it.  Connect with the link: :func:`share_link` splits it
        into the URL and token a :class:`Client` takes.
        Raises :class:`NoSuchProcess`, :class:`InvalidParams`.
        """
        return Share.from_json(self.call("share", share_params(process_number(proc), mode, expires_in, single_use)))

    def unshare(self, share_id: str) -> None:
        """Revoke a share: its link is refused from now on, its connections closed (4003)."""
        self.call("unshare", {"id": share_id})

    def release(self, proc: int) -> None:
        """Forget an exited process on the server.

        Raises :class:`NoSuchProcess` (unknown or released already),
        :class:`ProcessRunning` (its exit has not been sent yet).
        """
        self.call("release", {"proc": proc})

    def signal(self, proc: int, sig: Any, *, group: bool = True) -> None:
        """Send ``sig`` (name, number or :class:`signal.Signals`) to the process group (or the process).

        Raises :class:`NoSuchProcess`, :class:`ProcessExited`, :class:`InvalidParams` (unknown signal).
        """
        self.call("signal", {"proc": proc, "signal": signal_param(sig), "group": group})

    def kill(self, proc: int) -> None:
        """SIGKILL to the process group.  Raises :class:`NoSuchProcess`, :class:`ProcessExited`."""
        self.call("kill", {"proc": proc})

    def stop(self, proc: int, signal: Any = "SIGTERM", grace: float | None = None) -> ExitStatus:
        """``signal``, then SIGKILL after ``grace`` seconds if anything is left; the exit status.

        Raises :class:`NoSuchProcess`, :class:`InvalidParams`.
        """
        params: dict[str, Any] = {"proc": proc, "signal": signal_param(signal)}
        if grace is not None:
            params["grace"] = grace
        return ExitStatus.from_json(self.call("stop", params))

    def wait(self, proc: int, timeout: float | None = None) -> ExitStatus:
        """Wait on the server (any process of this token).

        Raises :class:`Timeout` when it still runs after ``timeout`` (it runs
        on), :class:`NoSuchProcess`.
        """
        params: dict[str, Any] = {"proc": proc}
        if timeout is not None:
            params["timeout"] = timeout
        return ExitStatus.from_json(self.call("wait", params))

    def resize(self, proc: int, rows: int, cols: int) -> None:
        """Set the window size of a process started with a pty.

        Raises :class:`NoSuchProcess`, :class:`ProcessExited`, :class:`InvalidParams` (no pty, a bad size).
        """
        self.call("resize", {"proc": proc, "rows": rows, "cols": cols})

    def detach(self, proc: int) -> None:
        """Stop receiving ``proc``'s output on this connection; the process goes on.

        Raises :class:`NoSuchProcess`.
        """
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
        size_rule: str | None = None,
        record: bool | Mapping[str, bool] | None = None,
    ) -> Process:
        """Start a process; read its output by iterating over the returned :class:`Process`.

        ``pty``: ``True`` (24x80), ``(rows, cols)`` or ``{"rows": r, "cols": c}``
        runs it on a pseudo-terminal.  ``binary=True`` has the output sent as
        binary frames (no JSON or base64 on the way).  ``on_disconnect="keep"``
        lets it outlive this connection (see :meth:`attach`).  ``command`` is
        what ``list`` shows as its command line (default: ``shlex.join(argv)``).
        ``size_rule`` (``"latest"`` or ``"smallest"``) sizes a pseudo-terminal
        that several connections control (docs/protocol.md, resize).
        ``record=True`` records the session on the server (``{"input": True}``:
        stdin too); its id is ``process.recording``.

        Raises :class:`NotFound` (no such executable), :class:`PermissionDenied`
        (not executable, bad ``cwd``), :class:`SpawnFailed`,
        :class:`LimitExceeded` (too many processes), :class:`InvalidParams`.
        """
        spawn = spawn_params(argv, env, clear_env, cwd, stdin, stderr, timeout, encoding, name)
        params = start_params(
            spawn,
            binary=binary,
            pty=pty,
            on_disconnect=on_disconnect,
            buffer=buffer,
            command=command,
            size_rule=size_rule,
            record=record,
        )
        started: list[Process] = []

        def route(call: Call) -> None:  # in the reader thread, before any output of it
            if call.error is None:
                result = call.result
                process = Process(
                    self,
                    result["proc"],
                    pid=result.get("pid"),
                    pgid=result.get("pgid"),
                    recording=result.get("recording"),
                    pty="pty" in params,
                    kept=on_disconnect == "keep",
                    output_format=output_format(params),
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
        on_overflow: str = "raise",
    ) -> Result:
        """Run a process to its end: feed ``input``, collect its output (at most
        ``max_output`` bytes per stream, 16 MiB by default), return a :class:`Result`.

        ``encoding`` is how the output travels (``"text"`` or ``"base64"``); the
        result holds bytes either way.  An ``input`` too large for one message is
        streamed through :meth:`start` instead, with the same result.

        Raises :class:`OutputTruncated` (its ``.result`` is the partial result)
        when a stream exceeded ``max_output``, unless ``on_overflow="truncate"``;
        the errors of :meth:`start`; :class:`InvalidParams` (``input`` with
        ``stdin="null"``, a bad param).
        """
        spawn = spawn_params(argv, env, clear_env, cwd, stdin, stderr, timeout, encoding, name)
        data = None if input is None else as_bytes(input)
        params, streamed = run_params(spawn, data, max_output, on_overflow, self.max_message_bytes)
        if streamed and data is not None:
            result = self._run_streamed(params, data)
        else:
            result = Result.from_json(self.call("run", params))
        return checked_run_result(result, on_overflow)

    def _run_streamed(self, params: dict[str, Any], data: bytes) -> Result:
        collector = OutputCollector(params.pop("max_output", DEFAULT_RUN_MAX_OUTPUT))
        process = self.start(**params)
        feeder = threading.Thread(target=feed_stdin, args=(process, data), name="procwire-run-input", daemon=True)
        feeder.start()
        for stream, chunk in process:
            collector.add(stream, chunk)
        feeder.join()
        status = process.exit_status
        assert status is not None
        with contextlib.suppress(ProcwireError):
            process.release()
        return collector.result(status)

    def attach(
        self,
        proc: int,
        offset: int | Mapping[str, int] | None = None,
        *,
        binary: bool | None = None,
        encoding: str | None = None,
        snapshot: bool = False,
        mode: str | None = None,
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

        Raises :class:`NoSuchProcess` (unknown, or not this token's),
        :class:`InvalidParams` (a bad ``offset``).
        """
        params = attach_params(proc, offset, binary, encoding, snapshot, mode)
        process = Process(self, proc, kept=True, output_format=output_format(params))
        if isinstance(offset, int):
            process.offsets["stdout"] = offset
        elif offset is not None:
            process.offsets.update(offset)
        previous = self._route(process)

        def attached(call: Call) -> None:  # in the reader thread, before the replay
            if call.error is None:
                process._attached(Attachment.from_json(call.result), dict(self._protocol.offsets.get(proc, {})))

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
