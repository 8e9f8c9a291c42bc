"""What the cluster workloads share: connections placed on a chosen worker.

With several TCP workers each worker listens on a socket of its own
(``SO_REUSEPORT``) and the kernel picks one per connection by a hash of
its addresses, so a client cannot ask for a worker: it connects again
until the ``hello`` notification names the node it wants (bounded).
"""

from __future__ import annotations

from collections.abc import Callable

from bench.client import ProcwireClient
from bench.results import PROCWIRE
from bench.servers import Procwire
from bench.workloads.base import Workload

ATTEMPTS = 64  # with two workers, the chance of missing one 64 times in a row is 2^-64


def connect(server: Procwire, timeout: float) -> tuple[ProcwireClient, str]:
    """A connection and the node (``<host>:<port>:<worker pid>``) serving it."""
    client = ProcwireClient(server.url, server.headers, timeout)
    try:
        return client, str(client.hello()["node"])
    except BaseException:
        client.conn.drop()
        raise


def connect_where(
    server: Procwire, timeout: float, wanted: Callable[[str], bool], what: str, attempts: int = ATTEMPTS
) -> tuple[ProcwireClient, str, int]:
    """A connection served by a node that ``wanted`` accepts, its node, and how many
    connections it took; RuntimeError after ``attempts`` others."""
    for attempt in range(1, attempts + 1):
        client, node = connect(server, timeout)
        if wanted(node):
            return client, node, attempt
        client.close()
    raise RuntimeError(f"no connection landed on {what} in {attempts} attempts")


class TwoWorkers(Workload):
    """A workload of procwire alone, WORKERS=2 with REDIS_URL: one worker against the other."""

    def sides(self) -> list[str]:
        return [PROCWIRE]

    def labels(self) -> dict[str, str]:
        return {PROCWIRE: "procwire WORKERS=2, REDIS_URL"}

    def uses_redis(self, side: str) -> bool:
        return True
