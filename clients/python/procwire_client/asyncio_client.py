"""The asyncio procwire client: :class:`AsyncClient`, :class:`~procwire_client.Client` in async form.

async with AsyncClient(url, token) as client:
    result = await client.run(["echo", "hi"])
    async with client.start(["cat"]) as process:
        await process.write(b"hello\\n")
        await process.close_stdin()
        async for stream, data in process:
            print(stream, data)
        status = await process.wait()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Generator, Mapping, Sequence
from typing import Any

from procwire_client.async_process import AsyncProcess
from procwire_client.async_resuming import AsyncResumingConnection
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


class AsyncClient(AsyncResumingConnection):
    """One connection to a procwire server, for asyncio.

    ``async with AsyncClient(url, token) as client:`` connects (or ``await
    client.connect()``, then ``await client.close()``).  ``url`` and ``token``
    default to ``$PROCWIRE_URL`` (else ``ws://127.0.0.1:9999/ws``) and
    ``$PROCWIRE_TOKEN``.  Every method raises :class:`ProcwireConnectionError`
    when the connection is gone; each method raises the same server errors as
    the :class:`~procwire_client.Client` method of the same name.

    ``reconnect=True`` (or a :class:`Reconnect` policy) resumes kept processes
    after a dropped connection, as for :class:`~procwire_client.Client`.
    """

    async def __aenter__(self) -> AsyncClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def ping(self) -> float:
        """The server's Unix time."""
        return (await self.call("ping"))["time"]

    async def lookpath(self, file: str | os.PathLike[str]) -> str:
        """Resolve an executable with the server's ``PATH``."""
        return (await self.call("lookpath", {"file": os.fspath(file)}))["path"]

    async def list(self) -> list[ProcessInfo]:
        """The processes of this token: running, and exited ones not yet forgotten."""
        return [ProcessInfo.from_json(info) for info in (await self.call("list"))["processes"]]

    async def find(self, pid: int) -> ProcessInfo:
        return ProcessInfo.from_json(await self.call("find", {"pid": pid}))

    async def share(
        self,
        proc: int | ProcessHandle,
        *,
        mode: str = "view",
        expires_in: float | None = None,
        single_use: bool = False,
    ) -> Share:
        """A link to this process (see :meth:`Client.share`)."""
        params = share_params(process_number(proc), mode, expires_in, single_use)
        return Share.from_json(await self.call("share", params))

    async def unshare(self, share_id: str) -> None:
        """Revoke a share (see :meth:`Client.unshare`)."""
        await self.call("unshare", {"id": share_id})

    async def release(self, proc: int) -> None:
        await self.call("release", {"proc": proc})

    async def signal(self, proc: int, sig: Any, *, group: bool = True) -> None:
        await self.call("signal", {"proc": proc, "signal": signal_param(sig), "group": group})

    async def kill(self, proc: int) -> None:
        await self.call("kill", {"proc": proc})

    async def stop(self, proc: int, signal: Any = "SIGTERM", grace: float | None = None) -> ExitStatus:
        params: dict[str, Any] = {"proc": proc, "signal": signal_param(signal)}
        if grace is not None:
            params["grace"] = grace
        return ExitStatus.from_json(await self.call("stop", params))

    async def wait(self, proc: int, timeout: float | None = None) -> ExitStatus:
        """Wait on the server; :class:`Timeout` when it still runs after ``timeout``."""
        params: dict[str, Any] = {"proc": proc}
        if timeout is not None:
            params["timeout"] = timeout
        return ExitStatus.from_json(await self.call("wait", params))

    async def resize(self, proc: int, rows: int, cols: int) -> None:
        await self.call("resize", {"proc": proc, "rows": rows, "cols": cols})

    async def detach(self, proc: int) -> None:
        """Stop receiving ``proc``'s output on this connection; the process goes on."""
        await self.call("detach", {"proc": proc})
        process = self._procs.pop(proc, None)
        if process is not None:
            process._detached()

    def start(self, argv: Sequence[str], **options: Any) -> Starting:
        """Start a process (the options of :meth:`Client.start`).

        ``process = await client.start(...)``, or ``async with client.start(...)
        as process`` to have it killed on the way out if it still runs.
        """
        return Starting(self._start(argv, **options))

    async def _start(
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
    ) -> AsyncProcess:
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
        started: dict[str, AsyncProcess] = {}

        def route(result: Any) -> None:  # in the reader task, before any output of it
            process = AsyncProcess(
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
            started["process"] = process

        await self._request("start", params, route)
        return started["process"]

    async def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | str | None = None,
        max_output: int | None = None,
        on_overflow: str = "raise",
        **options: Any,
    ) -> Result:
        """Run a process to its end (see :meth:`Client.run`): a :class:`Result`.

        Raises :class:`OutputTruncated` (``.result`` is the partial result)
        past ``max_output``, unless ``on_overflow="truncate"``.
        """
        spawn = spawn_params(argv, **options)
        data = None if input is None else as_bytes(input)
        params, streamed = run_params(spawn, data, max_output, on_overflow, self.max_message_bytes)
        if streamed and data is not None:
            result = await self._run_streamed(params, data)
        else:
            result = Result.from_json(await self.call("run", params))
        return checked_run_result(result, on_overflow)

    async def _run_streamed(self, params: dict[str, Any], data: bytes) -> Result:
        collector = OutputCollector(params.pop("max_output", DEFAULT_RUN_MAX_OUTPUT))
        process = await self._start(**params)
        feeder = asyncio.create_task(process._feed(data))
        async for stream, chunk in process:
            collector.add(stream, chunk)
        await feeder
        status = await process.wait()
        with contextlib.suppress(ProcwireError):
            await process.release()
        return collector.result(status)

    async def attach(
        self,
        proc: int,
        offset: int | Mapping[str, int] | None = None,
        *,
        binary: bool | None = None,
        encoding: str | None = None,
        snapshot: bool = False,
        mode: str | None = None,
    ) -> AsyncProcess:
        """Receive a process's output on this connection (see :meth:`Client.attach`).

        Raises :class:`NoSuchProcess`, :class:`InvalidParams` (a bad ``offset``).
        """
        params = attach_params(proc, offset, binary, encoding, snapshot, mode)
        process = AsyncProcess(self, proc, kept=True, output_format=output_format(params))
        previous = self._route(process)

        def attached(result: Any) -> None:  # in the reader task, before the replay
            process._attached(Attachment.from_json(result), dict(self._protocol.offsets.get(proc, {})))

        try:
            await self._request("attach", params, attached)
        except BaseException:
            self._unroute(process)
            if previous is not None:
                self._route(previous)
            raise
        if previous is not None:
            previous._detached()
        return process


class Starting:
    """What :meth:`AsyncClient.start` returns: ``await`` it for the process, or use it
    as ``async with client.start(...) as process`` (killed on the way out if it still runs)."""

    def __init__(self, started: Awaitable[AsyncProcess]) -> None:
        self._started = started
        self._process: AsyncProcess | None = None

    def __await__(self) -> Generator[Any, None, AsyncProcess]:
        return self._started.__await__()

    async def __aenter__(self) -> AsyncProcess:
        self._process = await self._started
        return self._process

    async def __aexit__(self, *exc: object) -> None:
        if self._process is not None:
            await self._process.__aexit__(*exc)
