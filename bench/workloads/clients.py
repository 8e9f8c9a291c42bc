"""clients: the asyncio Python client beside the sync one, against the same procwire.

The client must not be the bottleneck (issue 13): ``procwire_client.AsyncClient``
is the measured side and the sync ``procwire_client.Client`` the reference, each
on a server of its own, the same settings.  echo: a short line through ``cat``
(``write``, then read until its bytes are back), median and p99; stream:
``head -c N /dev/zero`` as binary frames, every byte counted through the
client's process iterator, start to exit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from bench.results import PROCWIRE, REFERENCE, Metric, at_least_ratio, at_most_ratio, percentile
from bench.servers import Procwire
from bench.workloads.base import Workload, before
from bench.workloads.echo import WARM_UP, timed_round_trips
from procwire_client import AsyncClient, Client

MB = 1e6


class Clients(Workload):
    name = "clients"
    reference_label = "sync Client"
    uses_websocketd = False
    redis_variant = False

    @property
    def description(self) -> str:  # type: ignore[override]
        return (
            "procwire_client.AsyncClient beside the sync Client on the same server settings: echo of a short line "
            f"through `cat`, and `head -c {self.opts.stream_bytes} /dev/zero` read through the process iterator"
        )

    def labels(self) -> dict[str, str]:
        return {PROCWIRE: "AsyncClient", REFERENCE: self.reference_label}

    def metrics(self) -> list[Metric]:
        return [
            Metric("p50", "median echo round trip", "µs", "lower", at_most_ratio(1.2)),
            Metric("p99", "p99 echo round trip", "µs", "lower"),
            Metric("throughput", "stream throughput, binary frames", "MB/s", "higher", at_least_ratio(0.8)),
        ]

    def start_reference(self) -> Procwire:
        return self.ctx.procwire(self.procwire_env())

    def run_procwire(self, server: Procwire, deadline: float) -> dict[str, float]:
        return asyncio.run(self._async_side(server, deadline))

    def run_reference(self, server: Any, deadline: float) -> dict[str, float]:
        assert isinstance(server, Procwire)
        line = (self.opts.echo_line + "\n").encode()
        with Client(server.url, server.token) as client:
            with client.start(["cat"], binary=True) as process:
                chunks = iter(process)
                latencies = timed_round_trips(self, lambda: _echo(process, chunks, line), deadline)
                process.close_stdin()
                process.wait()
            started = time.perf_counter()
            with client.start(self.stream_argv(), binary=True) as process:
                received = sum(len(data) for _, data in process)
            seconds = time.perf_counter() - started
        return self._values(latencies, received, seconds)

    async def _async_side(self, server: Procwire, deadline: float) -> dict[str, float]:
        line = (self.opts.echo_line + "\n").encode()
        async with AsyncClient(server.url, server.token) as client:
            async with client.start(["cat"], binary=True) as process:
                chunks = aiter(process)
                latencies = await self._timed_async(lambda: _async_echo(process, chunks, line), deadline)
                await process.close_stdin()
                await process.wait()
            started = time.perf_counter()
            received = 0
            async with client.start(self.stream_argv(), binary=True) as process:
                async for _, data in process:
                    received += len(data)
            seconds = time.perf_counter() - started
        return self._values(latencies, received, seconds)

    def stream_argv(self) -> list[str]:
        return ["head", "-c", str(self.opts.stream_bytes), "/dev/zero"]

    def _values(self, latencies: list[float], received: int, seconds: float) -> dict[str, float]:
        if received != self.opts.stream_bytes:
            raise RuntimeError(f"stream: {received} bytes received of {self.opts.stream_bytes}")
        return {
            "p50": percentile(latencies, 0.5) * 1e6,
            "p99": percentile(latencies, 0.99) * 1e6,
            "throughput": received / MB / seconds,
        }

    async def _timed_async(self, round_trip: Callable[[], Awaitable[None]], deadline: float) -> list[float]:
        """:func:`~bench.workloads.echo.timed_round_trips` for a coroutine."""
        latencies: list[float] = []
        for index in range(WARM_UP + self.opts.echo_count):
            if not before(deadline):
                self.note("a round stopped at the time cap")
                break
            started = time.perf_counter()
            await round_trip()
            if index >= WARM_UP:
                latencies.append(time.perf_counter() - started)
        return latencies


def _echo(process: Any, chunks: Iterator[tuple[str, bytes]], line: bytes) -> None:
    process.write(line)
    got = 0
    while got < len(line):
        got += len(next(chunks)[1])


async def _async_echo(process: Any, chunks: AsyncIterator[tuple[str, bytes]], line: bytes) -> None:
    await process.write(line)
    got = 0
    while got < len(line):
        got += len((await anext(chunks))[1])
