"""fan-out: many processes each streaming at once, while one client echoes through ``cat``.

Every stream has its own connection (procwire: one ``start`` per connection;
websocketd: one program per connection), all read by one selector loop in
the suite; the echo probe is a separate process (``bench.probe``) timing a
round trip every ``--fanout-echo-interval`` seconds from the moment the
streams are opened until the last one has ended.  The probe runs at a higher
priority (``--fanout-probe-nice``, as root) so that on a small machine its
percentiles measure the server rather than the suite's own bulk reader
competing for the same cores.  websocketd serves both
programs from one ``--binary --dir`` (``/cat`` and ``/stream``).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import selectors
import shutil
import subprocess
import sys
import time

from bench.client import Closed, Conn, ProcwireClient
from bench.results import Metric, at_most, exactly
from bench.servers import ROOT, Procwire, Websocketd
from bench.workloads.base import Workload, before

PROBE_TIMEOUT = 30.0


class _ProcwireStream:
    def __init__(self, server: Procwire, argv: list[str], params: dict, timeout: float) -> None:
        self.client = ProcwireClient(server.url, server.headers, timeout)
        self.conn = self.client.conn
        self.client.request("start", dict(argv=argv, stdin="null", **params))
        self.proc: int | None = None
        self.received = 0

    def readable(self) -> bool:
        """Read one message; True once the stream has ended."""
        kind, value = self.client.next()
        if kind == "output":
            self.received += len(value.data)
        elif kind == "response":
            if "error" in value:
                raise RuntimeError(f"start failed: {value['error']}")
            self.proc = value["result"]["proc"]
        elif kind == "exit":
            return True
        return False


class _ReferenceStream:
    def __init__(self, url: str, timeout: float) -> None:
        self.conn = Conn(url, [], timeout)
        self.received = 0

    def readable(self) -> bool:
        try:
            self.received += len(self.conn.recv()[1])
        except Closed:
            return True
        return False


class FanOut(Workload):
    name = "fanout"
    reference_label = "websocketd --binary (cat, head)"

    @property
    def description(self) -> str:  # type: ignore[override]
        return (
            f"{self.opts.fanout_procs} processes each streaming {self.opts.fanout_bytes:,} bytes at once "
            "while one client echoes through `cat`"
        )

    @property
    def rounds(self) -> int:
        return self.opts.fanout_rounds

    @property
    def redis_rounds(self) -> int:
        """One round with Redis unless ``--redis-rounds`` asks more: 5 GB streamed per round."""
        return self.one_redis_round()

    def metrics(self) -> list[Metric]:
        return [
            Metric("p99", "echo p99 under load", "ms", "lower", at_most(50, "ms")),
            Metric("p50", "echo median under load", "ms", "lower"),
            Metric("delivered", "bytes delivered", "%", None, exactly(100, "100 %")),
            Metric("throughput", "aggregate throughput", "MB/s", "higher"),
        ]

    def stream_argv(self) -> list[str]:
        return ["head", "-c", str(self.opts.fanout_bytes), "/dev/zero"]

    def start_reference(self) -> Websocketd | None:
        directory = self.ctx.work_dir / "websocketd-fanout"
        directory.mkdir(exist_ok=True)
        cat = directory / "cat"
        if not cat.exists():
            cat.symlink_to(shutil.which("cat") or "/bin/cat")
        stream = directory / "stream"
        stream.write_text("#!/bin/sh\nexec " + " ".join(self.stream_argv()) + "\n")
        stream.chmod(0o755)
        return self.ctx.websocketd_server([f"--dir={directory}"], binary=True)

    def run_procwire(self, server: Procwire, deadline: float) -> dict[str, float]:
        self.note(
            f"the echo probe (its own process, nice {self.opts.fanout_probe_nice}) sends one line every "
            f"{self.opts.fanout_echo_interval * 1000:g} ms; one connection per stream, read by one selector loop"
        )
        params = self.output_mode.start_params
        return self._run(
            ["--kind", "procwire", "--url", server.url, *[f"--header={h}" for h in server.headers]],
            lambda: _ProcwireStream(server, self.stream_argv(), params, self.ctx.timeout),
            deadline,
        )

    def run_reference(self, server: Websocketd | None, deadline: float) -> dict[str, float]:
        assert server is not None
        return self._run(
            ["--kind", "websocketd", "--url", server.url + "cat"],
            lambda: _ReferenceStream(server.url + "stream", self.ctx.timeout),
            deadline,
        )

    def _run(self, probe_args: list[str], open_stream, deadline: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
        probe = self.ctx.supervisor.start(
            [
                sys.executable,
                "-m",
                "bench.probe",
                *probe_args,
                f"--interval={self.opts.fanout_echo_interval}",
                f"--nice={self.opts.fanout_probe_nice}",
                f"--max-seconds={max(deadline - time.monotonic(), 1):.0f}",
                f"--timeout={self.ctx.timeout}",
            ],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        streams: list = []
        selector = selectors.DefaultSelector()
        try:
            if _read_line(probe, PROBE_TIMEOUT) != "ready":
                raise RuntimeError("the echo probe did not start")
            _tell(probe, "go")
            started = time.perf_counter()
            for _ in range(self.opts.fanout_procs):
                stream = open_stream()
                streams.append(stream)
                selector.register(stream.conn.fileno(), selectors.EVENT_READ, stream)
            running = len(streams)
            while running and before(deadline):
                for key, _ in selector.select(1.0):
                    if key.data.readable():
                        selector.unregister(key.fd)
                        running -= 1
            elapsed = time.perf_counter() - started
            if running:
                self.note(f"{running} streams were still running at the time cap")
            _tell(probe, "stop")
            echo = json.loads(_read_line(probe, PROBE_TIMEOUT) or "{}")
        finally:
            selector.close()
            for stream in streams:
                with contextlib.suppress(Exception):
                    stream.conn.drop()
            self.ctx.supervisor.stop(probe, grace=5)
        if echo.get("errors"):
            self.note(f"echo probe errors: {echo['errors'][:3]}")
        if not echo.get("count"):
            raise RuntimeError("the echo probe measured nothing")
        delivered = sum(stream.received for stream in streams)
        expected = self.opts.fanout_procs * self.opts.fanout_bytes
        return {
            "p99": echo["p99_ms"],
            "p50": echo["p50_ms"],
            "delivered": delivered / expected * 100,
            "throughput": delivered / elapsed / 1e6,
            "echoes": echo["count"],
        }


def _tell(process: subprocess.Popen, line: str) -> None:
    with contextlib.suppress(OSError):
        assert process.stdin is not None
        process.stdin.write(line.encode() + b"\n")
        process.stdin.flush()


def _read_line(process: subprocess.Popen, timeout: float) -> str | None:
    assert process.stdout is not None
    if not select.select([process.stdout], [], [], timeout)[0]:
        return None
    return process.stdout.readline().decode().strip()
