"""The workloads of issue 3, in the order the table lists them."""

from bench.workloads.base import Capped, Context, Workload
from bench.workloads.compress import Compression
from bench.workloads.cycle import Cycle
from bench.workloads.echo import Echo
from bench.workloads.fanout import FanOut
from bench.workloads.idle import Idle
from bench.workloads.slow import SlowReader
from bench.workloads.spawn import Spawn
from bench.workloads.stream import Stream

WORKLOADS: dict[str, type[Workload]] = {
    workload.name: workload for workload in (Spawn, Cycle, Echo, Stream, Idle, FanOut, SlowReader, Compression)
}

__all__ = ["WORKLOADS", "Capped", "Context", "Workload"]
