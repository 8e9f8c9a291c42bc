"""Program endpoints (issue 14) side by side with websocketd, on websocketd's own ground.

Both servers run the same command per connection and are driven by the
same client code: connect (procwire: to ``/programs/NAME`` with its token),
then what websocketd's users do.  procwire serves each program from a
``[programs.NAME]`` table given as ``PROCWIRE_PROGRAMS``; websocketd runs in
its single-program form (``--binary`` for the stream).

- ``program-cycle``: connect, the program (``/bin/true``) runs, the server
  ends the connection (procwire: a Close frame, answered; websocketd: the
  TCP connection), sequentially.
- ``program-echo``: a short line through ``cat`` in text mode over one
  connection, timed until its line is back.
- ``program-stream``: ``head -c N /dev/zero`` in binary mode, timed from
  connect to the end of the connection.
- ``program-conns``: 1,000 connections open at once, each with its own
  ``cat``.  Two figures per connection: the server's own RSS growth, and the
  growth of the Pss of the server and every process it runs (each ``cat``
  counted with its share of the pages it shares), which is what a
  connection and its program cost the machine.  Pss, not RSS: summed over
  a thousand ``cat`` processes, RSS counts the same libc pages a thousand
  times.
"""

from __future__ import annotations

import json
import time
from contextlib import closing
from typing import ClassVar

from bench.client import Conn
from bench.procs import tree_pss_kib
from bench.results import Metric, at_least_ratio, at_most_ratio, exactly, percentile
from bench.servers import Procwire, Server, Websocketd
from bench.workloads.base import Workload, before, read_to_end
from bench.workloads.echo import timed_round_trips
from bench.workloads.idle import Idle

WARM_UP = 10
CONNECTIONS = 1000
PROGRAM_PROCS_SPARE = 100  # MAX_PROGRAM_PROCS above the connections: stopping programs still hold their slot


class Programs(Workload):
    """What the program workloads share: one program, served by both servers."""

    program: ClassVar[str]  # its name on procwire, /programs/NAME
    binary: ClassVar[bool] = False  # binary mode (websocketd --binary)
    redis_variant = False  # a program connection runs on its worker: nothing for Redis to carry

    def command(self) -> list[str]:
        raise NotImplementedError

    def procwire_env(self) -> dict[str, str]:
        table = {self.program: {"argv": self.command(), "mode": "binary" if self.binary else "text"}}
        return {"PROCWIRE_PROGRAMS": json.dumps(table)}

    def start_reference(self) -> Websocketd | None:
        return self.ctx.websocketd_server(self.command(), binary=self.binary)

    def connect(self, server: Server) -> Conn:
        """A connection to the program: procwire's with its token, websocketd's at ``/``."""
        if isinstance(server, Procwire):
            url = f"ws://127.0.0.1:{server.port}/programs/{self.program}"
            return Conn(url, server.headers, self.ctx.timeout)
        return Conn(server.url, server.headers, self.ctx.timeout)

    def run_procwire(self, server: Procwire, deadline: float) -> dict[str, float]:
        return self.run(server, deadline)

    def run_reference(self, server: Server | None, deadline: float) -> dict[str, float]:
        assert server is not None
        return self.run(server, deadline)

    def run(self, server: Server, deadline: float) -> dict[str, float]:
        """One round, the same on both sides."""
        raise NotImplementedError


class ProgramCycle(Programs):
    name = "program-cycle"
    description = (
        "connect to a program endpoint, /bin/true runs, the server ends the connection; sequential "
        "(procwire: /programs/true with its token, a Close frame; websocketd: /bin/true, no Close frame)"
    )
    reference_label = "websocketd /bin/true"
    program = "true"
    profiled = True

    def command(self) -> list[str]:
        return ["/bin/true"]

    def metrics(self) -> list[Metric]:
        return [Metric("rate", "cycle rate", "cycles/s", "higher", at_least_ratio(1.0))]

    def run(self, server: Server, deadline: float) -> dict[str, float]:
        for _ in range(WARM_UP):
            read_to_end(self.connect(server), deadline)
        done, started = 0, time.perf_counter()
        while done < self.opts.cycle_count and before(deadline):
            read_to_end(self.connect(server), deadline)
            done += 1
        if done < self.opts.cycle_count:
            self.note(f"a round stopped at the time cap after {done} of {self.opts.cycle_count} cycles")
        return {"rate": done / (time.perf_counter() - started)}


class ProgramEcho(Programs):
    name = "program-echo"
    description = "round trip of a short line through `cat` in text mode, one connection (a message each way)"
    reference_label = "websocketd cat (text)"
    program = "cat"
    profiled = True

    def command(self) -> list[str]:
        return ["cat"]

    def metrics(self) -> list[Metric]:
        return [
            Metric("p50", "median round trip", "µs", "lower", at_most_ratio(1.0)),
            Metric("p99", "p99 round trip", "µs", "lower"),
        ]

    def run(self, server: Server, deadline: float) -> dict[str, float]:
        line = self.opts.echo_line.encode()

        def round_trip() -> None:
            conn.send_text(line)
            if conn.recv()[1] != line:
                raise RuntimeError("wrong echo")

        conn = self.connect(server)
        with closing(conn):
            latencies = timed_round_trips(self, round_trip, deadline)
        return {"p50": percentile(latencies, 0.5) * 1e6, "p99": percentile(latencies, 0.99) * 1e6}


class ProgramStream(Programs):
    name = "program-stream"
    reference_label = "websocketd --binary"
    program = "zeros"
    binary = True
    profiled = True

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"`head -c {self.opts.stream_bytes} /dev/zero` as a binary program, timed from connect to the end"

    def command(self) -> list[str]:
        return ["head", "-c", str(self.opts.stream_bytes), "/dev/zero"]

    def metrics(self) -> list[Metric]:
        return [Metric("throughput", "throughput, binary messages", "MB/s", "higher", at_least_ratio(1.0))]

    def run(self, server: Server, deadline: float) -> dict[str, float]:
        started = time.perf_counter()
        received = read_to_end(self.connect(server), deadline)
        if received != self.opts.stream_bytes:
            raise RuntimeError(f"received {received} bytes of {self.opts.stream_bytes}")
        return {"throughput": received / (time.perf_counter() - started) / 1e6}


class ProgramConnections(Programs, Idle):
    name = "program-conns"
    reference_label = "websocketd cat"
    program = "cat"
    profiled = False

    @property
    def description(self) -> str:  # type: ignore[override]
        return (
            f"{self.connections()} connections open at once, each running its own `cat`, held "
            f"{self.opts.idle_hold:g} s, then each echoes a line"
        )

    def command(self) -> list[str]:
        return ["cat"]

    def metrics(self) -> list[Metric]:
        return [
            Metric("dropped", "dropped connections", "", None, exactly(0, "0"), fmt=lambda v: f"{v:.0f}"),
            Metric("pss_per_conn", "Pss of the server and its programs per connection", "KiB", "lower"),
            Metric("rss_per_conn", "the server's own RSS per connection", "KiB", "lower"),
            Metric("open_rate", "opening rate (a program started each)", "connections/s", "higher"),
        ]

    def connections(self) -> int:
        return CONNECTIONS

    def procwire_env(self) -> dict[str, str]:
        limits = {
            "PROCWIRE_MAX_PROGRAM_PROCS": str(self.connections() + PROGRAM_PROCS_SPARE),
            "PROCWIRE_WORKER_CONNECTIONS": str(self.connections() + 1000),
        }
        return {**super().procwire_env(), **limits}

    def memory(self, server: Procwire | Websocketd) -> dict[str, int]:
        return {"rss": server.rss_kib(), "pss": tree_pss_kib(server.measured_pid())}

    def run(self, server: Server, deadline: float) -> dict[str, float]:
        def open_one() -> Conn:
            return self.connect(server)

        def verify(conn: Conn) -> None:
            conn.send_text(b"x")
            if conn.recv()[1] != b"x":
                raise RuntimeError("wrong echo")

        # Both servers hold a socket and three pipes a connection: the reference's cap holds for both.
        return self._hold(server, self.reference_connections(), open_one, verify, deadline)


PROGRAM_WORKLOADS = (ProgramCycle, ProgramEcho, ProgramStream, ProgramConnections)
