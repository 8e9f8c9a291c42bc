"""Our local terminal wired to a remote pseudo-terminal (``shell``, ``run -t``, ``attach -i``).

Raw keys go to the process (except ssh's ``~.`` escape), its output comes to
our terminal, the window size follows ours.  Whatever ends the session, the
terminal is given back as it was: its termios settings, and the modes a
full-screen program may have left on (hidden cursor, application keypad and
cursor keys, alternate screen, mouse reporting, bracketed paste).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import sys
import threading
from typing import Any

from procwire_client import Client, ExitStatus, Process
from procwire_client.commands.common import EXIT_DISCONNECTED, note, read_stdin, thread, write_all
from procwire_client.errors import ProcwireConnectionError, ProcwireError

Errors = (ProcwireError, ProcwireConnectionError)
ESCAPE = ord("~")
ESCAPE_LEAVE = ord(".")
LINE_ENDS = (ord("\r"), ord("\n"))

# Modes set back whatever the program did: they are the defaults a shell prompt expects.
RESTORE_MODES = (
    b"\x1b[0m"  # colours and attributes off
    b"\x1b[?25h"  # cursor shown
    b"\x1b[?1l"  # cursor keys in normal mode (not application mode)
    b"\x1b>"  # keypad in numeric mode
    b"\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1005l\x1b[?1006l\x1b[?1015l"  # mouse reporting off
    b"\x1b[?1004l"  # focus reporting off
    b"\x1b[?2004l"  # bracketed paste off
)
# Sent only when the program is in the alternate screen: out of it, ?1049l would move the cursor.
LEAVE_ALTERNATE_SCREEN = b"\x1b[?1049l"
# Before a screen snapshot: modes to their defaults (soft reset), cursor home, screen cleared.
BEFORE_SCREEN = b"\x1b[!p\x1b[H\x1b[2J"
PRIVATE_MODES = re.compile(rb"\x1b\[\?([0-9;]+)([hl])")
ALTERNATE_SCREEN_MODES = {b"47", b"1047", b"1049"}
MODE_TAIL = 32  # bytes kept between chunks, so that a mode cut in two is still seen


class ScreenModes:
    """Follows the program's output far enough to know whether it is in the alternate screen."""

    def __init__(self) -> None:
        self.alternate = False
        self._tail = b""

    def feed(self, data: bytes) -> None:
        text = self._tail + data
        end = 0
        for match in PRIVATE_MODES.finditer(text):
            if ALTERNATE_SCREEN_MODES & set(match.group(1).split(b";")):
                self.alternate = match.group(2) == b"h"
            end = match.end()
        rest = text[end:]
        escape = rest.rfind(b"\x1b")
        unfinished = rest[escape:] if escape >= 0 else b""
        self._tail = unfinished if len(unfinished) <= MODE_TAIL else b""

    def restore_sequence(self) -> bytes:
        return (LEAVE_ALTERNATE_SCREEN if self.alternate else b"") + RESTORE_MODES


def terminal_size() -> tuple[int, int]:
    for fd in (0, 1, 2):
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        if size.lines > 0 and size.columns > 0:
            return size.lines, size.columns
    return 24, 80


class Leave:
    """What the ``~.`` escape does: detach a kept session, else drop the connection."""

    def __init__(self, client: Client, process: Process, detachable: bool) -> None:
        self.client = client
        self.process = process
        self.detachable = detachable
        self.left = False

    def __call__(self) -> None:
        self.left = True
        if self.detachable:
            with contextlib.suppress(*Errors):
                self.process.detach()
                return
        self.client.close()


def terminal_session(client: Client, process: Process, *, close_at_eof: bool, detachable: bool) -> ExitStatus | None:
    """Our terminal wired to a remote pty: raw keys in, output out, window size kept.

    The terminal's settings and modes are restored whatever ends the session.
    """
    fd = 0
    terminal = os.isatty(fd)
    saved = _termios().tcgetattr(fd) if terminal else None
    leave = Leave(client, process, detachable)
    modes = ScreenModes()
    previous: dict[int, Any] = {}
    try:
        if terminal:
            import tty

            tty.setraw(fd, _termios().TCSANOW)  # TCSANOW: keys typed ahead stay
        if threading.current_thread() is threading.main_thread():
            previous = session_signals(process, terminal)
        thread(forward_keys, process, leave if terminal else None, close_at_eof and not terminal)
        try:
            status = _copy_screen(process, modes)
        except ProcwireConnectionError:
            if not leave.left:
                raise
            status = None
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        if terminal and os.isatty(1):
            with contextlib.suppress(OSError):
                write_all(1, modes.restore_sequence() + (b"\r\n" if leave.left else b""))
        if saved is not None:
            _termios().tcsetattr(fd, _termios().TCSADRAIN, saved)
    if leave.left and status is None:
        note(f"detached from process {process.proc}" if detachable else "connection closed")
        return None if detachable else ExitStatus(proc=process.proc, code=EXIT_DISCONNECTED)
    return status


def _copy_screen(process: Process, modes: ScreenModes) -> ExitStatus | None:
    """The remote terminal's output to ours; a screen snapshot repaints it from scratch."""
    for stream, data in process:
        if stream == "screen":
            data = BEFORE_SCREEN + data
        modes.feed(data)
        write_all(2 if stream == "stderr" else 1, data)
    return process.exit_status


def _termios() -> Any:
    import termios

    return termios


def session_signals(process: Process, terminal: bool) -> dict[int, Any]:
    """SIGWINCH sends the new window size; SIGTERM and SIGHUP end the session
    (through the ``finally`` that restores the terminal)."""
    sizes: queue.SimpleQueue[bool] = queue.SimpleQueue()

    def resize_forever() -> None:
        while sizes.get():
            with contextlib.suppress(*Errors):
                process.resize(*terminal_size())

    def quit_session(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous: dict[int, Any] = {}
    if terminal:
        thread(resize_forever)
        previous[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, lambda signum, frame: sizes.put(True))
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous[signum] = signal.signal(signum, quit_session)
    return previous


def forward_keys(process: Process, leave: Leave | None, close_at_eof: bool) -> None:
    """Keys to the process unchanged, except the ``~.`` escape at the start of a line."""
    escape = Escape()
    try:
        while data := read_stdin():
            if leave is None:
                process.write(data)
                continue
            data, leaving = escape.feed(data)
            if data:
                process.write(data)
            if leaving:
                leave()
                return
        if close_at_eof:
            process.close_stdin()  # on a pty: ^D
    except Errors:
        pass


class Escape:
    """ssh's escape: ``~.`` right after Enter (or first) leaves; ``~~`` sends one ``~``."""

    def __init__(self) -> None:
        self.at_line_start = True
        self.tilde = False

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        if ESCAPE not in data and not self.tilde:
            self.at_line_start = data[-1] in LINE_ENDS
            return data, False
        out = bytearray()
        for byte in data:
            if self.tilde:
                self.tilde = False
                if byte == ESCAPE_LEAVE:
                    return bytes(out), True
                out.append(ESCAPE)
                if byte == ESCAPE:
                    self.at_line_start = False
                    continue
            elif self.at_line_start and byte == ESCAPE:
                self.tilde = True
                continue
            out.append(byte)
            self.at_line_start = byte in LINE_ENDS
        return bytes(out), False


def is_terminal() -> bool:
    """Our stdin is a terminal: a session gets a remote pty and raw keys."""
    return sys.stdin is not None and os.isatty(0)
