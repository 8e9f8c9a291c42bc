"""idle: N authenticated idle connections on one worker.

All N are opened one after another, held for ``--idle-hold`` seconds (long
enough for a server ping, which the client answers), then each must answer
a request: procwire a JSON-RPC ``ping``, websocketd a line through ``cat``.
The figure is the server's VmRSS growth divided by the connections.  A
websocketd connection is a ``cat`` process and four descriptors in
websocketd, so the reference holds at most what the open-files limit allows;
only websocketd's own RSS is counted, not its children's.

One thread, one selector: the client holds every socket itself.
"""

from __future__ import annotations

import contextlib
import selectors
import time

from bench.client import Conn, decode
from bench.results import Metric, at_most, exactly
from bench.servers import Procwire, Websocketd
from bench.workloads.base import Workload, before

PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
FDS_PER_REFERENCE_CONNECTION = 5  # socket + 3 pipes, and room for the transient exec pipe
SPARE_FDS = 512
SERVICE_EVERY = 200


class Idle(Workload):
    name = "idle"
    reference_label = "websocketd cat (its own RSS)"
    fresh_servers = True

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"{self.connections()} authenticated idle connections held {self.opts.idle_hold:g} s on one worker"

    @property
    def rounds(self) -> int:
        return self.opts.idle_rounds

    @property
    def redis_rounds(self) -> int:
        """One round with Redis unless ``--redis-rounds`` asks more: a round holds the connections 30 s."""
        return self.one_redis_round()

    def metrics(self) -> list[Metric]:
        return [
            Metric("dropped", "dropped connections", "", None, exactly(0, "0"), fmt=lambda v: f"{v:.0f}"),
            Metric("rss_per_conn", "server RSS per connection", "KiB", "lower", at_most(32, "KiB")),
            Metric("open_rate", "opening rate", "connections/s", "higher"),
        ]

    def connections(self) -> int:
        limit = self.ctx.open_files - SPARE_FDS
        if self.opts.idle_conns > limit:
            self.note(f"connections capped at {limit} by the open-files limit ({self.ctx.open_files})")
        return min(self.opts.idle_conns, limit)

    def reference_connections(self) -> int:
        limit = (self.ctx.open_files - SPARE_FDS) // FDS_PER_REFERENCE_CONNECTION
        if self.connections() > limit:
            self.note(
                f"websocketd held {limit} connections, not {self.connections()}: each costs it a socket and "
                f"three pipes (more while its program starts) and the open-files limit is {self.ctx.open_files}"
            )
        return min(self.connections(), limit)

    def procwire_env(self) -> dict[str, str]:
        return {"PROCWIRE_WORKER_CONNECTIONS": str(self.connections() + 1000)}

    def start_reference(self) -> Websocketd | None:
        return self.ctx.websocketd_server(["cat"])

    def run_procwire(self, server: Procwire, deadline: float) -> dict[str, float]:
        def open_one() -> Conn:
            conn = Conn(server.url, server.headers, self.ctx.timeout)
            kind, _ = decode(*conn.recv())
            if kind != "hello":
                raise RuntimeError(f"expected hello, got {kind}")
            return conn

        def verify(conn: Conn) -> None:
            conn.send_text(PING)
            while decode(*conn.recv())[0] != "response":
                pass

        return self._hold(server, self.connections(), open_one, verify, deadline)

    def run_reference(self, server: Websocketd | None, deadline: float) -> dict[str, float]:
        assert server is not None

        def open_one() -> Conn:
            return Conn(server.url, server.headers, self.ctx.timeout)

        def verify(conn: Conn) -> None:
            conn.send_text(b"x")
            if conn.recv()[1] != b"x":
                raise RuntimeError("wrong echo")

        return self._hold(server, self.reference_connections(), open_one, verify, deadline)

    def _hold(self, server, count, open_one, verify, deadline) -> dict[str, float]:  # type: ignore[no-untyped-def]
        warm = open_one()
        warm.drop()
        time.sleep(0.5)
        baseline = self.memory(server)
        selector = selectors.DefaultSelector()
        conns: list[Conn] = []
        lost = 0
        try:
            started = time.perf_counter()
            for index in range(count):
                if not before(deadline):
                    self.note(f"opening stopped at the time cap after {index} of {count}")
                    lost += count - index
                    break
                try:
                    conn = open_one()
                except Exception:
                    lost += 1
                    continue
                conns.append(conn)
                selector.register(conn.fileno(), selectors.EVENT_READ, conn)
                if index % SERVICE_EVERY == 0:
                    lost += _service(selector, 0)
            open_rate = len(conns) / (time.perf_counter() - started)
            hold_until = time.monotonic() + self.opts.idle_hold
            while (left := hold_until - time.monotonic()) > 0 and before(deadline + self.opts.idle_hold):
                lost += _service(selector, min(left, 0.5))
            memory = self.memory(server)
            alive = [conn for conn in conns if not conn.closed]
            lost += self._verify(alive, verify)
            return {
                "dropped": lost,
                **{f"{key}_per_conn": (memory[key] - baseline[key]) / max(len(conns), 1) for key in memory},
                "open_rate": open_rate,
                "connections": len(conns),
            }
        finally:
            selector.close()
            for conn in conns:
                with contextlib.suppress(Exception):
                    conn.drop()

    def memory(self, server: Procwire | Websocketd) -> dict[str, int]:
        """The memory figures (KiB) whose growth is divided by the connections: ``rss`` is the server's own."""
        return {"rss": server.rss_kib()}

    @staticmethod
    def _verify(conns: list[Conn], verify) -> int:  # type: ignore[no-untyped-def]
        failed = 0
        for conn in conns:
            try:
                verify(conn)
            except Exception:  # closed, timed out, or a wrong answer: dropped all the same
                failed += 1
        return failed


def _service(selector: selectors.BaseSelector, timeout: float) -> int:
    """Answer what the servers sent (pings); return how many connections closed."""
    closed = 0
    for key, _ in selector.select(timeout):
        conn: Conn = key.data
        if not conn.service():
            selector.unregister(key.fd)
            conn.closed = True
            closed += 1
    return closed
