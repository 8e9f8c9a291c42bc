"""xstream: a kept process's output read from another worker, every byte checked (issue 10).

One server with ``WORKERS=2`` and ``REDIS_URL``.  A connection starts the
producer (bench/producer.py, ``--xstream-bytes`` of numbered pseudo-random
chunks) with ``on_disconnect: "keep"``, ``buffer`` = ``--xstream-buffer``
(the history window, also the length of its Redis stream) and detaches;
nothing is written before a reader asks.  A reader attaches from offset 0,
reads until the ``exit`` and checks the count and sha256 (computed
beforehand from the same generator).  The reader is a connection on the
other worker (through the Redis stream) or on the producer's own worker
(the reference: the same, same server, same round); the order alternates.

Two producers, each read both ways:

- **credit** (the target row): one 1 MiB chunk per line the reader writes to
  its stdin, the reader keeping half the history window in credit, so the
  producer never runs further ahead of the reader than the window holds and
  no byte can be trimmed from the Redis stream before it is read.
- **free** (informational): one line starts it, then it writes at full
  speed.  Nothing slows it for a remote reader: a reader that falls behind
  the stream's window, or a node whose queue to Redis is over
  ``CLUSTER_MIRROR_BYTES``, loses chunks (the offset jumps).  The row says
  how many bytes arrived.
"""

from __future__ import annotations

import hashlib
import sys
import time
from contextlib import ExitStack
from typing import Any

from bench.client import ProcwireClient, RpcError
from bench.producer import chunks
from bench.results import PROCWIRE, Metric, at_least_ratio, exactly
from bench.servers import ROOT, Procwire, Server
from bench.workloads.base import check
from bench.workloads.cluster import TwoWorkers, connect, connect_where

CHUNK = 1 << 20
SEED = 10
SAME = "same worker as the producer (same round)"
MODES = ("credit", "free")
NO_SUCH_PROCESS = -32002
ATTACH_RETRIES = 100
ATTACH_RETRY_INTERVAL = 0.01


class CrossStream(TwoWorkers):
    name = "xstream"
    reference_label = SAME
    uses_websocketd = False
    redis_variant = False

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.round = 0

    @property
    def description(self) -> str:  # type: ignore[override]
        return (
            f"{self.opts.xstream_bytes:,} bytes from a kept producer (WORKERS=2, REDIS_URL, buffer "
            f"{self.opts.xstream_buffer:,}) attached from the other worker (through its Redis stream) against "
            "a reader on the producer's worker, count and sha256 checked; credit: the reader grants 1 MiB "
            f"chunks through stdin, {self.window()} in flight; free: unpaced producer"
        )

    @property
    def rounds(self) -> int:
        return self.opts.xstream_rounds

    def window(self) -> int:
        """Chunks granted ahead of the reader: half the history window, at least one."""
        return max(1, self.opts.xstream_buffer // CHUNK // 2)

    def metrics(self) -> list[Metric]:
        def versus(key: str) -> dict[str, str]:
            return {"versus": PROCWIRE, "versus_key": key, "versus_label": SAME}

        return [
            Metric(
                "cross_credit",
                "throughput from the other worker, credit-paced",
                "MB/s",
                "higher",
                at_least_ratio(0.25),
                **versus("same_credit"),
            ),
            Metric(
                "cross_credit_intact",
                "bytes exact from the other worker, credit-paced (sha256)",
                "",
                None,
                exactly(1, "yes"),
                _yes_no,
                **versus("same_credit_intact"),
            ),
            Metric("cross_free", "throughput from the other worker, unpaced", "MB/s", "higher", **versus("same_free")),
            Metric(
                "cross_free_delivered",
                "bytes delivered to the other worker, unpaced",
                "%",
                None,
                **versus("same_free_delivered"),
            ),
            Metric(
                "cross_free_intact",
                "bytes exact on the other worker, unpaced (sha256)",
                "",
                None,
                fmt=_yes_no,
                **versus("same_free_intact"),
            ),
        ]

    def start_server(self, side: str) -> Server | None:
        return self.ctx.procwire(self.ctx.redis_env(workers=2))

    def expected_sha256(self) -> str:
        key = f"xstream-sha256-{self.opts.xstream_bytes}"
        if key not in self.ctx.cache:
            digest = hashlib.sha256()
            for data in chunks(self.opts.xstream_bytes, CHUNK, SEED):
                digest.update(data)
            self.ctx.cache[key] = digest.hexdigest()
        return str(self.ctx.cache[key])

    def argv(self, mode: str) -> list[str]:
        producer = str(ROOT / "bench" / "producer.py")
        return [sys.executable, "-I", "-S", producer, mode, str(self.opts.xstream_bytes), str(CHUNK), str(SEED)]

    def run_procwire(self, server: Procwire, deadline: float) -> dict[str, float]:
        expected = self.expected_sha256()
        timeout = self.ctx.timeout
        with ExitStack() as stack:
            home_client, home = connect(server, timeout)
            stack.callback(home_client.conn.drop)
            away_client, _, _ = connect_where(server, timeout, lambda node: node != home, "the other worker")
            stack.callback(away_client.conn.drop)
            readers = [("same", home_client), ("cross", away_client)]
            if self.round % 2:
                readers.reverse()
            self.round += 1
            values: dict[str, float] = {}
            for mode in MODES:
                for label, reader in readers:
                    proc = home_client.start(
                        self.argv(mode),
                        self.output_mode,
                        on_disconnect="keep",
                        buffer=self.opts.xstream_buffer,
                        stderr="null",
                    )
                    home_client.call("detach", {"proc": proc})
                    received, seconds, digest = self._read(reader, proc, mode, deadline)
                    reader.call("release", {"proc": proc})
                    values[f"{label}_{mode}"] = received / seconds / 1e6
                    values[f"{label}_{mode}_delivered"] = 100 * received / self.opts.xstream_bytes
                    values[f"{label}_{mode}_intact"] = float(received == self.opts.xstream_bytes and digest == expected)
                    if received != self.opts.xstream_bytes:
                        self.note(
                            f"{mode}, {label}: a round received {received:,} of {self.opts.xstream_bytes:,} bytes"
                        )
            home_client.close()
            away_client.close()
            return values

    def _read(self, reader: ProcwireClient, proc: int, mode: str, deadline: float) -> tuple[int, float, str]:
        """Attach from 0, start or pace the producer, read to its exit: bytes, seconds, sha256."""
        total_chunks = -(-self.opts.xstream_bytes // CHUNK)
        window = self.window()
        answer = _attach(reader, proc)
        if answer.pop("retries"):
            self.note(
                "an attach from the other worker right after the start answered -32002 (no such process): "
                "the record reaches Redis through the owner's writer, after the `start` answer; retried"
            )
        if answer["truncated"]:
            self.note(f"{mode}: an attach answered truncated: true")
        started = time.perf_counter()
        credited = min(window, total_chunks) if mode == "credit" else 1
        reader.write(proc, b"\n" * credited)
        digest = hashlib.sha256()
        received = frames = 0
        while True:
            kind, value = reader.next()
            if kind == "output" and value.proc == proc:
                digest.update(value.data)
                received += len(value.data)
                frames += 1
                if mode == "credit":
                    owed = min(received // CHUNK + window, total_chunks) - credited
                    if owed and (owed >= max(1, window // 2) or credited + owed == total_chunks):
                        reader.write(proc, b"\n" * owed)
                        credited += owed
                if not frames & 63:
                    check(deadline)
            elif kind == "exit" and value["proc"] == proc:
                break
            elif kind == "response" and "error" in value:
                raise RuntimeError(f"procwire answered an error: {value['error']}")
        return received, time.perf_counter() - started, digest.hexdigest()


def _attach(reader: ProcwireClient, proc: int) -> dict[str, Any]:
    """``attach`` from offset 0, again (bounded) while the record is not visible yet."""
    for retries in range(ATTACH_RETRIES):
        try:
            return dict(reader.call("attach", {"proc": proc}), retries=retries)
        except RpcError as error:
            if error.code != NO_SUCH_PROCESS or retries == ATTACH_RETRIES - 1:
                raise
            time.sleep(ATTACH_RETRY_INTERVAL)
    raise AssertionError("unreachable")


def _yes_no(value: float) -> str:
    return "yes" if value == 1 else "no"
