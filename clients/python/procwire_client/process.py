"""A process followed by the sync :class:`~procwire_client.Client`: its output, stdin and control."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from procwire_client.core.params import as_bytes, data_param
from procwire_client.core.protocol import BINARY_HEADER, copy_connection_error
from procwire_client.errors import ProcessExited, ProcwireConnectionError, ProcwireError, Timeout
from procwire_client.handle import END, ProcessHandle
from procwire_client.results import ExitStatus

if TYPE_CHECKING:
    from procwire_client.connection import Call
    from procwire_client.sync_client import Client


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class Process(ProcessHandle):
    """A process started (or attached to) by a :class:`Client`.

    Iterate over it for its output: ``for stream, data in process`` yields
    ``("stdout" | "stderr", bytes)`` until the process exits (then the
    exit status is in :attr:`exit_status`).  Stdin writes are pipelined: a
    :meth:`write` returns once its bytes are sent, waiting only while more
    than the window of earlier bytes is unanswered; a write the server
    refused is raised by the next :meth:`write`, :meth:`flush`,
    :meth:`close_stdin` or :meth:`wait`.
    """

    _ended: threading.Event

    def __init__(self, client: Client, proc: int, **handle: Any) -> None:
        super().__init__(proc, **handle)
        self.client = client
        self._items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._ended = threading.Event()  # exit, detach or connection lost
        self._write_lock = threading.Lock()  # one writer at a time: chunks stay in order
        self._flow = threading.Condition()
        self._in_flight = 0
        self._stdin_error: ProcwireError | None = None
        self.stdin_error: ProcwireError | None = None  # the last refused write, kept for inspection

    # -- from the reader thread ---------------------------------------------------

    def _push(self, item: Any) -> None:
        self._items.put(item)

    def _ended_now(self) -> None:
        with self._flow:
            self._flow.notify_all()

    def _stdin_failed(self, error: ProcwireError) -> None:
        with self._flow:
            self.stdin_error = error
            if self._stdin_error is None:
                self._stdin_error = error
            self._flow.notify_all()

    # -- output -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        return self.iter_output()

    def iter_output(self, timeout: float | None = None) -> Iterator[tuple[str, bytes]]:
        """``(stream, bytes)`` as they arrive, until the exit (or a detach).

        ``timeout`` bounds the whole iteration (:class:`Timeout`); a lost
        connection raises :class:`ProcwireConnectionError` after the output
        that did arrive.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._drained:
            try:
                item = self._items.get(timeout=_remaining(deadline))
            except queue.Empty:
                raise Timeout(f"process {self.proc} did not finish its output within {timeout} s") from None
            if item is END:
                self._drained = True
                break
            yield item
        if self._lost is not None:
            raise copy_connection_error(self._lost)

    def communicate(self, input: bytes | str | None = None, timeout: float | None = None) -> tuple[bytes, bytes]:
        """Write ``input`` (if any) and close stdin, then collect all output until the exit."""
        if input is not None:
            feeder = threading.Thread(target=feed_stdin, args=(self, as_bytes(input)), daemon=True)
            feeder.start()
        elif not self.pty:
            with contextlib.suppress(ProcessExited):
                self.close_stdin()
        collected = {"stdout": bytearray(), "stderr": bytearray()}
        for stream, data in self.iter_output(timeout):
            collected[stream] += data
        return bytes(collected["stdout"]), bytes(collected["stderr"])

    def wait(self, timeout: float | None = None) -> ExitStatus:
        """The exit status, once the process exited and all its output arrived.

        Raises :class:`Timeout` when ``timeout`` passes first (the process runs
        on), a refused stdin write not raised yet, or the connection error.
        After :meth:`detach` it waits on the server instead.
        """
        self._raise_stdin_error()
        if self._is_detached:
            return self.client.wait(self.proc, timeout)
        if not self._ended.wait(timeout):
            raise Timeout(f"process {self.proc} is still running after {timeout} s")
        if self._status is None:
            if self._is_detached:
                return self.client.wait(self.proc, timeout)
            raise copy_connection_error(self._lost) if self._lost else self.client._lost()
        self._raise_stdin_error()
        return self._status

    # -- stdin --------------------------------------------------------------------------

    def _raise_stdin_error(self) -> None:
        with self._flow:
            error, self._stdin_error = self._stdin_error, None
        if error is not None:
            raise error

    def write(self, data: bytes | str, *, timeout: float | None = None, binary: bool = False) -> int:
        """Send bytes (a ``str`` as UTF-8) to the process's stdin; the number of bytes.

        Large data is split in chunks of at most the server's ``max_stdin_chunk``.
        ``binary=True`` sends them as binary stdin frames (no JSON, no base64).

        Raises :class:`ProcessExited` when the process has exited (its exit
        arrived), or when an earlier write was refused because the process
        exited or its stdin was closed; :class:`LimitExceeded` for an earlier
        write the server refused for size; :class:`Timeout` when the process
        did not read its stdin within ``timeout``;
        :class:`ProcwireConnectionError` when the connection is gone.  A write
        the server refuses later is raised by the next :meth:`write`,
        :meth:`flush`, :meth:`close_stdin` or :meth:`wait`.
        """
        payload = as_bytes(data)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._write_lock:
            self._raise_stdin_error()
            if self._status is not None:
                raise ProcessExited(f"process {self.proc} has exited: its stdin takes no more bytes")
            step = self.client.write_chunk
            if binary:
                step = min(step, self.client.max_message_bytes - BINARY_HEADER.size)
            unconfirmed = 0
            for start in range(0, len(payload), step):
                chunk = payload[start : start + step]
                if binary and unconfirmed and unconfirmed + len(chunk) > self.client.write_window // 2:
                    self._send_chunk(b"", released=unconfirmed)
                    unconfirmed = 0
                self._reserve(len(chunk), deadline, timeout)
                if binary:
                    self._send_binary_chunk(chunk)
                    unconfirmed += len(chunk)
                else:
                    self._send_chunk(chunk)
            if unconfirmed:
                self._send_chunk(b"", released=unconfirmed)
        return len(payload)

    def _send_binary_chunk(self, chunk: bytes) -> None:
        """One binary stdin frame: never answered; the empty ``write`` that follows
        is answered once its bytes are in the pipe (writes keep their order)."""
        self.client._send_stdin(self.proc, chunk)

    def _reserve(self, size: int, deadline: float | None, timeout: float | None) -> None:
        """Wait until ``size`` more unanswered bytes stay within the window.

        The server takes a write to an empty queue whole and refuses one that
        would take its queue past ``STDIN_BUFFER_BYTES``: keeping the
        unanswered bytes (the next write included) within that bound means it
        never refuses for lack of room.
        """
        window = self.client.write_window
        with self._flow:
            while self._in_flight and self._in_flight + size > window and self._stdin_error is None:
                if self.client.closed:
                    raise self.client._lost()
                if not self._flow.wait(_remaining(deadline)):
                    raise Timeout(f"process {self.proc} did not read its stdin within {timeout} s")
            if self._stdin_error is not None:
                error, self._stdin_error = self._stdin_error, None
                raise error
            self._in_flight += size

    def _send_chunk(self, chunk: bytes, released: int = 0) -> None:
        """A ``write`` request; its answer frees its bytes (and ``released`` earlier ones) from the window."""
        size = len(chunk) + released

        def answered(call: Call) -> None:  # in the reader thread
            with self._flow:
                self._in_flight -= size
                if isinstance(call.error, ProcwireError):
                    self.stdin_error = call.error
                    if self._stdin_error is None:
                        self._stdin_error = call.error
                self._flow.notify_all()

        params = {"proc": self.proc, **data_param(chunk, self.client.max_message_bytes)}
        self.client._request("write", params, answered)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every write was answered; raise the first refused one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._flow:
            while self._in_flight and not self.client.closed:
                if not self._flow.wait(_remaining(deadline)):
                    raise Timeout(f"process {self.proc} did not read its stdin within {timeout} s")
        self._raise_stdin_error()

    def close_stdin(self) -> None:
        """End of file on stdin, after the bytes written before (on a pty: ^D)."""
        with self._write_lock:
            self._raise_stdin_error()
            self.client.call("close_stdin", {"proc": self.proc})
            with contextlib.suppress(Timeout):
                self.flush(timeout=5.0)

    # -- control ------------------------------------------------------------------------

    def signal(self, sig: Any, *, group: bool = True) -> None:
        self.client.signal(self.proc, sig, group=group)

    def kill(self) -> None:
        self.client.kill(self.proc)

    def stop(self, signal: Any = "SIGTERM", grace: float | None = None) -> ExitStatus:
        return self.client.stop(self.proc, signal, grace)

    def resize(self, rows: int, cols: int) -> None:
        self.client.resize(self.proc, rows, cols)

    def detach(self) -> None:
        """Stop receiving the output here (iteration ends); the process runs on."""
        self.client.detach(self.proc)
        self.client._unroute(self)
        self._detached()

    def release(self) -> None:
        """Forget the exited process on the server."""
        self.client.release(self.proc)

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        """Kill the process if it still runs (and wait a little for its exit)."""
        if self._ended.is_set() or self.client.closed:
            return
        try:
            self.kill()
            self._ended.wait(10.0)
        except (ProcwireError, ProcwireConnectionError):
            pass


def feed_stdin(process: Process, data: bytes) -> None:
    """Write ``data`` and close stdin; a child that stops reading is not an error."""
    try:
        process.write(data)
        process.close_stdin()
    except (ProcwireError, ProcwireConnectionError):
        pass
    process._stdin_error = None
