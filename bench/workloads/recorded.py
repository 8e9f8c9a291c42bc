"""recorded: what a session recording (issue 15) costs a stream.

procwire compared with itself: the stream workload's transfer with
``"record": true`` (the recording's journal written to ``RECORDINGS_DIR`` on
this machine's disk, in the bench's work directory), against the same stream
unrecorded.  The output is ``seq`` text, as a session's would be.  Each finished recording
is deleted by retention (``RECORDINGS_MAX_BYTES=1``), so the disk holds at
most the one being written.  Issue 15: at most 10 % slower.
"""

from __future__ import annotations

from bench.client import OutputMode
from bench.results import Metric, at_least_ratio
from bench.servers import Procwire, Server
from bench.workloads.stream import Stream


class Recorded(Stream):
    name = "recorded"
    reference_label = "procwire, not recorded"
    uses_websocketd = False
    profiled = False
    redis_variant = False

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"{self.opts.stream_bytes:,} bytes of `seq` output, recorded (`record: true`) or not"

    def modes(self) -> list[OutputMode]:
        return [self.output_mode]

    def metrics(self) -> list[Metric]:
        label = f"throughput recorded, {self.ctx.output_mode.name} output (ratio: recorded/not)"
        return [Metric("throughput", label, "MB/s", "higher", at_least_ratio(0.9))]

    def argv(self) -> list[str]:
        return ["sh", "-c", f"seq 1 999999999999999 | head -c {self.opts.stream_bytes}"]

    def procwire_env(self) -> dict[str, str]:
        return {
            "PROCWIRE_RECORDINGS_DIR": str(self.ctx.work_dir / "recordings"),
            "PROCWIRE_RECORDINGS_MAX_BYTES": "1",
        }

    def start_reference(self) -> Server | None:  # type: ignore[override]
        return self.ctx.procwire(self.procwire_env())

    def run_procwire(self, server: Procwire, deadline: float) -> dict[str, float]:
        return self._procwire_mode(server, self.output_mode, deadline, record=True)

    def run_reference(self, server: Server | None, deadline: float) -> dict[str, float]:
        assert isinstance(server, Procwire)
        return self._procwire_mode(server, self.output_mode, deadline)
