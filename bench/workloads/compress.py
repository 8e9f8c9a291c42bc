"""compression: what permessage-deflate costs when a client asks for it.

websocketd never compresses, so this row compares procwire with itself:
``COMPRESSION=true`` and a client that offers permessage-deflate, against
the default (compression off).  The stream is ``seq 1 ... | head -c N``
(text, compresses about 5:1), sent the same way as the stream workload.
websocket-client cannot negotiate compression, so this row alone uses the
``websockets`` library's sync client, for both columns.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import orjson

from bench.client import OPCODE_BINARY, OPCODE_TEXT, decode
from bench.results import Metric
from bench.servers import Procwire, Server
from bench.workloads.base import Workload, check

try:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect
except ImportError:  # pragma: no cover - the bench extra installs it
    connect = None  # type: ignore[assignment]


class Compression(Workload):
    name = "compression"
    reference_label = "procwire, compression off"
    uses_websocketd = False

    @property
    def description(self) -> str:  # type: ignore[override]
        return (
            f"{self.opts.compress_bytes:,} bytes of `seq` output with permessage-deflate "
            "(server COMPRESSION=true, client offers it)"
        )

    def metrics(self) -> list[Metric]:
        return [
            Metric("throughput", "throughput, deflate on (ratio: on/off)", "MB/s", "higher"),
            Metric("wire_ratio", "payload bytes per wire byte", "", None),
        ]

    def argv(self) -> list[str]:
        return ["sh", "-c", f"seq 1 999999999999999 | head -c {self.opts.compress_bytes}"]

    def procwire_env(self) -> dict[str, str]:
        return {"PROCWIRE_COMPRESSION": "true"}

    def start_reference(self) -> Server | None:
        return self.ctx.procwire({"PROCWIRE_COMPRESSION": "false"})

    def run_procwire(self, server: Procwire, deadline: float) -> dict[str, float]:
        return self._run(server, "deflate", deadline)

    def run_reference(self, server: Server | None, deadline: float) -> dict[str, float]:
        assert isinstance(server, Procwire)
        return self._run(server, None, deadline)

    def _run(self, server: Procwire, compression: str | None, deadline: float) -> dict[str, float]:
        if connect is None:
            raise RuntimeError("the websockets package is missing (pip install -e '.[bench]')")
        headers = dict(header.split(": ", 1) for header in server.headers)
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=self.ctx.timeout)
        ws = connect(
            server.url,
            sock=sock,
            additional_headers=headers,
            compression=compression,
            max_size=None,
            ping_interval=None,
            proxy=None,
            open_timeout=self.ctx.timeout,
        )
        try:
            negotiated = "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
            if compression and not negotiated:
                raise RuntimeError("the server did not accept permessage-deflate")
            wire_before = _bytes_received(sock)
            started = time.perf_counter()
            request: dict[str, Any] = {"argv": self.argv(), "stdin": "null", **self.output_mode.start_params}
            ws.send(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "start", "params": request}).decode())
            received = messages = 0
            proc = None
            while True:
                message = ws.recv(timeout=self.ctx.timeout)
                opcode = OPCODE_BINARY if isinstance(message, bytes) else OPCODE_TEXT
                kind, value = decode(opcode, message if isinstance(message, bytes) else message.encode())
                messages += 1
                if kind == "response":
                    proc = value["result"]["proc"]
                elif kind == "output" and value.proc == proc:
                    received += len(value.data)
                elif kind == "exit" and value["proc"] == proc:
                    break
                if not messages & 63:
                    check(deadline)
            elapsed = time.perf_counter() - started
            wire = _bytes_received(sock) - wire_before
        except ConnectionClosed as error:
            raise RuntimeError(f"connection closed: {error}") from None
        finally:
            ws.close()
        if received != self.opts.compress_bytes:
            raise RuntimeError(f"received {received} bytes of {self.opts.compress_bytes}")
        return {"throughput": received / elapsed / 1e6, "wire_ratio": received / wire if wire > 0 else float("nan")}


TCP_INFO_BYTES_RECEIVED = 128  # offset of tcpi_bytes_received in Linux's struct tcp_info


def _bytes_received(sock: socket.socket) -> int:
    """Bytes this TCP socket has received, from the kernel (0 where it does not say)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        return struct.unpack_from("=Q", info, TCP_INFO_BYTES_RECEIVED)[0] if len(info) >= 136 else 0
    except OSError:
        return 0
