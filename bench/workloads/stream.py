"""stream: ``head -c N /dev/zero`` to the client, every byte counted.

procwire: over an open connection, timed from ``start`` to ``exit``; output
as base64 ``output`` notifications, or as binary frames once the server
accepts ``"binary": true`` (``--stream-mode``).  websocketd: ``websocketd
--binary head -c N /dev/zero``, timed from connect to close.
"""

from __future__ import annotations

import time
from typing import Any

from bench.client import BASE64, Conn, OutputMode, ProcwireClient
from bench.results import Metric, at_least_ratio
from bench.servers import Procwire, Websocketd
from bench.workloads.base import Workload, check, read_to_end


class Stream(Workload):
    name = "stream"
    reference_label = "websocketd --binary"
    profiled = True

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"`head -c {self.opts.stream_bytes} /dev/zero` to the client, all bytes counted"

    def modes(self) -> list[OutputMode]:
        """The selected output mode, and base64 too when that is not it (for comparison);
        base64 alone on a side where the selected mode fails."""
        mode = self.output_mode
        return [mode] if mode is BASE64 else [mode, BASE64]

    def metrics(self) -> list[Metric]:
        label = f"throughput, {self.ctx.output_mode.name} output"
        metrics = [Metric("throughput", label, "MB/s", "higher", at_least_ratio(1.0))]
        if self.ctx.output_mode is not BASE64:
            metrics.append(Metric("throughput_base64", "throughput, base64 output", "MB/s", "higher"))
        return metrics

    def argv(self) -> list[str]:
        return ["head", "-c", str(self.opts.stream_bytes), "/dev/zero"]

    def start_reference(self) -> Websocketd | None:
        return self.ctx.websocketd_server(self.argv(), binary=True)

    def run_procwire(self, server: Procwire, deadline: float) -> dict[str, float]:
        values: dict[str, float] = {}
        for mode in self.modes():
            key = "throughput" if mode is self.ctx.output_mode else f"throughput_{mode.name}"
            values[key] = self._procwire_mode(server, mode, deadline)["throughput"]
        return values

    def run_profiled(self, server: Procwire, deadline: float) -> None:
        self._procwire_mode(server, self.modes()[0], deadline)  # the mode of the target row only

    def _procwire_mode(self, server: Procwire, mode: OutputMode, deadline: float, **params: Any) -> dict[str, float]:
        """One stream; ``params``: more of ``start``'s (``record``)."""
        client = ProcwireClient(server.url, server.headers, self.ctx.timeout)
        try:
            started = time.perf_counter()
            proc = client.start(self.argv(), mode, stdin="null", **params)
            received = frames = 0
            while True:
                kind, value = client.next()
                if kind == "output" and value.proc == proc:
                    received += len(value.data)
                    frames += 1
                    if not frames & 63:
                        check(deadline)
                elif kind == "exit" and value["proc"] == proc:
                    break
            return self._result(received, time.perf_counter() - started)
        finally:
            client.close()

    def run_reference(self, server: Websocketd | None, deadline: float) -> dict[str, float]:
        assert server is not None
        started = time.perf_counter()
        received = read_to_end(Conn(server.url, server.headers, self.ctx.timeout), deadline)
        values = self._result(received, time.perf_counter() - started)
        if self.ctx.output_mode is not BASE64:  # one reference figure for both procwire rows
            values["throughput_base64"] = values["throughput"]
        return values

    def _result(self, received: int, elapsed: float) -> dict[str, float]:
        if received != self.opts.stream_bytes:
            raise RuntimeError(f"received {received} bytes of {self.opts.stream_bytes}")
        return {"throughput": received / elapsed / 1e6}
