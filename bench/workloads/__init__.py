"""The workloads of issues 3, 10, 13, 14 and 15, in the order the table lists them."""

from bench.workloads.base import Capped, Context, Workload
from bench.workloads.clients import Clients
from bench.workloads.compress import Compression
from bench.workloads.cycle import Cycle
from bench.workloads.echo import Echo
from bench.workloads.fanout import FanOut
from bench.workloads.idle import Idle
from bench.workloads.parallel import Parallel
from bench.workloads.programs import PROGRAM_WORKLOADS
from bench.workloads.recorded import Recorded
from bench.workloads.slow import SlowReader
from bench.workloads.spawn import Spawn
from bench.workloads.stream import Stream
from bench.workloads.xecho import CrossEcho
from bench.workloads.xstream import CrossStream

ISSUE_3 = (Spawn, Cycle, Echo, Stream, Idle, FanOut, SlowReader, Compression)
ISSUE_10 = (CrossEcho, CrossStream, Parallel)
ISSUE_13 = (Clients,)
ISSUE_14 = PROGRAM_WORKLOADS
ISSUE_15 = (Recorded,)
WORKLOADS: dict[str, type[Workload]] = {
    workload.name: workload for workload in (*ISSUE_3, *ISSUE_10, *ISSUE_13, *ISSUE_14, *ISSUE_15)
}
CLUSTER = tuple(workload.name for workload in ISSUE_10)  # the rows that need a Redis
GROUPS = {"programs": tuple(workload.name for workload in ISSUE_14)}  # --only programs: every program row

__all__ = ["CLUSTER", "GROUPS", "WORKLOADS", "Capped", "Context", "Workload"]
