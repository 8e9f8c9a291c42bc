"""One process's recording: an uncounted output sink and a tap on its input and resizes.

Every event is one ``os.writev`` of a journal entry (:mod:`.journal`: a
short line, then the chunk's bytes as they came) to a file opened with
``O_APPEND``, from the pump's greenlet as the chunk passes, before any
client is sent it: no buffer in this process, so what a client received
is in the file (the kernel's page cache) when the worker is killed, and a
write to a local disk's page cache takes microseconds (never a wait on the
network or on the child).  The recording is closed, and its metadata
completed, when the process's exit is delivered.

A write that fails (a full disk: ENOSPC, EDQUOT, EFBIG) stops the recording
only: the file is cut back to its last whole event, its metadata say
``failed`` with the error, a ``recording_failed`` line goes to the audit
log, and every connection receiving the process's output gets a
``recording`` notification.  The process and the server go on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from app.recording.formats import ASCIICAST, PIPES
from app.recording.journal import Event, entry
from app.recording.store import RECORDING, Store, new_id
from app.security import audit

if TYPE_CHECKING:
    from app.processes.process import Process
    from app.processes.sinks import Source

log = logging.getLogger(__name__)


class Recorder:
    """Records one process into ``store``; made before the launch, so that a
    start that cannot be recorded is refused before anything runs."""

    def __init__(
        self, store: Store, proc: int, owner: str, command: str, pty: tuple[int, int] | None, *, inputs: bool
    ) -> None:
        self.store = store
        self.id = new_id(proc)
        self._inputs = inputs
        self._input_offset = 0
        self._size = 0
        self._started = time.monotonic()
        self._process: Process | None = None
        self.meta: dict[str, Any] = {
            "id": self.id,
            "proc": proc,
            "owner": owner,
            "command": command,
            "format": ASCIICAST if pty is not None else PIPES,
            "input": inputs,
            "size": {"rows": pty[0], "cols": pty[1]} if pty else None,
            "streams": [],
            "started_at": time.time(),
            "ended_at": None,
            "state": RECORDING,
            "host": socket.gethostname(),
            "writer": os.getpid(),
            "exit": None,
            "error": None,
        }
        self._fd: int | None = store.open(self.id)
        try:
            store.write_meta(self.meta)
        except OSError:
            self.discard()
            raise

    def discard(self) -> None:
        """The process could not be started: no recording of it."""
        self._close()
        self.store.remove(self.id)

    def attach(self, process: Process, node: str) -> None:
        """Begin: everything the process does from now on (its pumps have not started yet)."""
        self._process = process
        self.meta.update(pid=process.pid, node=node, argv=process.argv, streams=process.streams)
        if process.window is not None:
            rows, cols = process.window.size
            self.meta["size"] = {"rows": rows, "cols": cols}
        self._started = time.monotonic()
        process.subscribe(self, {}, counted=False)
        process.taps.append(self)
        self._save_meta()  # with the pid and the node, for the listing while it runs
        audit.event("recording", token=self.meta["owner"], proc=process.id, recording=self.id, input=self._inputs)

    def _now(self) -> float:
        return time.monotonic() - self._started

    # -- OutputSink -------------------------------------------------------------------

    def output(self, process: Source, stream: str, data: bytes, offset: int) -> None:
        self._write({"stream": stream, "offset": offset}, data)

    def end_of_stream(self, process: Source, stream: str) -> None:
        self._write({"stream": stream, "eof": True})

    def exited(self, process: Source) -> None:
        status = process.status or {}
        self._write({"exit": status})
        if self._fd is None:
            return  # failed (before, or with this last line): its metadata say so already
        self._close()
        self.meta.update(state="complete", ended_at=time.time(), exit=status, bytes=self._size)
        self._save_meta()
        self.store.sweep_soon()

    # -- the process's tap -----------------------------------------------------------

    def input(self, data: bytes) -> None:
        if self._inputs:
            self._write({"stream": "stdin", "offset": self._input_offset}, data)
            self._input_offset += len(data)

    def resized(self, rows: int, cols: int) -> None:
        self._write({"resize": [rows, cols]})

    # -- the file ---------------------------------------------------------------------

    def _write(self, event: Event, data: bytes = b"") -> None:
        """One journal entry, whole, or the recording stops (a short write is finished)."""
        if self._fd is None:
            return
        buffers = entry({"t": round(self._now(), 6), **event}, data)
        total = sum(map(len, buffers))
        try:
            written = os.writev(self._fd, buffers)
            if written < total:
                rest = memoryview(b"".join(buffers))[written:]
                while rest:
                    rest = rest[os.write(self._fd, rest) :]
        except OSError as error:
            self._fail(error)
            return
        self._size += total

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _save_meta(self) -> None:
        try:
            self.store.write_meta(self.meta)
        except OSError as error:
            log.error("recording %s: cannot write its metadata: %s", self.id, error)

    def _fail(self, error: OSError) -> None:
        """Stop recording, never the process: cut back to the last whole event, say so everywhere."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
        self._close()
        message = f"recording stopped: {error.strerror or error}"
        self.meta.update(state="failed", ended_at=time.time(), error=message, bytes=self._size)
        self._save_meta()
        proc = self.meta["proc"]
        log.error("recording %s of process %s: %s", self.id, proc, message)
        audit.event(
            "recording_failed",
            level=logging.ERROR,
            token=self.meta["owner"],
            proc=proc,
            recording=self.id,
            errno=error.errno,
            error=message,
        )
        if self._process is not None:
            notice = {"proc": proc, "recording": self.id, "state": "failed", "error": message}
            for sink in self._process.sinks:
                tell = getattr(sink, "notice", None)
                if tell is not None:
                    tell("recording", notice)
