"""The current screen of a terminal session, rebuilt from its output history.

A client that comes back to a session wants to see what the terminal shows
now, not a replay of everything it ever showed (minutes of ``top`` are
hundreds of kilobytes of old frames).  The history is fed to pyte, a
headless terminal emulator, and its screen is written back out as the ANSI
that paints it on a fresh terminal: rows with their colours and attributes,
the cursor, the scroll region, and the modes a program set (alternate
screen, application cursor keys, bracketed paste, mouse reporting, a hidden
cursor), so that keys typed next reach the program as it expects them.

pyte is pure Python (about 0.5 MB/s here), so only the tail of the history is
emulated (:data:`WINDOW`, enough for several full screens), starting at the
last full clear in it when there is one; the modes are taken from the whole
history with one regular-expression pass, which is cheap.  The work is cut
into slices with ``pause()`` between them so that a snapshot never holds
the event loop for long.  Sans-I/O: bytes in, text out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyte
from pyte import graphics

WINDOW = 64 * 1024  # bytes of history emulated: a few full screens of colourful output
SLICE = 4096  # bytes fed between two pauses (about 8 ms of pyte here)
LOOKAHEAD = 4096  # how far a window that starts mid-sequence looks for a clean start

# A full clear: RIS, or clear-screen next to cursor-home in either order.
_FULL_CLEAR = re.compile(rb"\x1bc|\x1b\[H\x1b\[2J|\x1b\[2J\x1b\[H")
# DEC private modes set or reset, a full reset, keypad application/numeric mode.
_MODE_CHANGE = re.compile(rb"\x1b\[\?([0-9;]*)([hl])|\x1bc|\x1b([=>])")

# The private modes a program sets that change what keys send or how the
# screen behaves, in the order they are restored.  25 (cursor shown) is on by default.
TRACKED_MODES = (1, 1000, 1002, 1003, 1005, 1006, 1015, 2004, 25)
ALTERNATE_SCREEN = (1049, 1047, 47)
DEFAULT_MODES = {25: True}

_FG = {name: code for code, name in (graphics.FG_ANSI | graphics.FG_AIXTERM).items()}
_BG = {name: code for code, name in (graphics.BG_ANSI | graphics.BG_AIXTERM).items()}
_FLAGS = (("bold", 1), ("italics", 3), ("underscore", 4), ("blink", 5), ("reverse", 7), ("strikethrough", 9))


@dataclass
class Modes:
    """The terminal modes in force at the end of the history."""

    private: dict[int, bool]
    keypad_application: bool = False

    @property
    def alternate_screen(self) -> bool:
        return any(self.private.get(mode, False) for mode in ALTERNATE_SCREEN)


def modes_of(history: bytes) -> Modes:
    """Replay every mode change of ``history`` in order; a full reset starts over."""
    modes = Modes(dict(DEFAULT_MODES))
    for match in _MODE_CHANGE.finditer(history):
        numbers, setting, keypad = match.groups()
        if keypad is not None:
            modes.keypad_application = keypad == b"="
        elif setting is None:
            modes = Modes(dict(DEFAULT_MODES))
        else:
            for number in numbers.split(b";"):
                if number.isdigit():
                    modes.private[int(number)] = setting == b"h"
    return modes


def window_start(history: bytes) -> int:
    """Where emulation starts: the last full clear in the window, else the window's
    first escape or line break (a window cut inside a sequence would draw junk)."""
    start = max(0, len(history) - WINDOW)
    clears = [match.start() for match in _FULL_CLEAR.finditer(history, start)]
    if clears:
        return clears[-1]
    if start == 0:
        return 0
    ahead = history[start : start + LOOKAHEAD]
    boundaries = [index for index in (ahead.find(b"\x1b"), ahead.find(b"\n")) if index >= 0]
    return start + min(boundaries) if boundaries else start


def render(history: bytes, rows: int, cols: int, pause: Callable[[], None] = lambda: None) -> str:
    """The ANSI text that paints, on any terminal of ``rows`` x ``cols``, what a
    terminal fed ``history`` shows now; ``pause`` is called between slices."""
    screen = pyte.Screen(cols, rows)
    stream = pyte.ByteStream(screen)
    for start in range(window_start(history), len(history), SLICE):
        stream.feed(history[start : start + SLICE])
        pause()
    return "".join(_paint(screen, modes_of(history)))


def _paint(screen: pyte.Screen, modes: Modes) -> Iterator[str]:
    yield "\x1b[!p"  # soft reset: default modes, attributes and scroll region
    yield "\x1b[?1049h" if modes.alternate_screen else "\x1b[?1049l"
    yield "\x1b[0m\x1b[H\x1b[2J"
    for y in range(screen.lines):
        yield from _row(screen.buffer[y], y, screen.columns)
    if screen.margins is not None:
        yield f"\x1b[{screen.margins.top + 1};{screen.margins.bottom + 1}r"
    yield from _modes(modes)
    cursor = screen.cursor
    yield f"\x1b[{cursor.y + 1};{min(cursor.x, screen.columns - 1) + 1}H"
    yield f"\x1b[{_sgr(cursor.attrs)}m"


def _row(line: dict[int, pyte.screens.Char], y: int, columns: int) -> Iterator[str]:
    """One row, from its first column to its last cell that is not a default blank."""
    cells = [line[x] for x in range(columns)]
    while cells and cells[-1].data == " " and _sgr(cells[-1]) == "0":
        cells.pop()
    if not cells:
        return
    yield f"\x1b[{y + 1};1H"
    current = "0"
    for cell in cells:
        if not cell.data:
            continue  # the second half of a wide character
        attributes = _sgr(cell)
        if attributes != current:
            yield f"\x1b[{attributes}m"
            current = attributes
        yield cell.data
    yield "\x1b[0m"


def _sgr(char: pyte.screens.Char) -> str:
    """The full SGR parameters of a cell's attributes (``0`` first, so they replace)."""
    parts = ["0"]
    parts += [str(code) for flag, code in _FLAGS if getattr(char, flag)]
    parts += _colour(char.fg, _FG, 38)
    parts += _colour(char.bg, _BG, 48)
    return ";".join(parts)


def _colour(value: str, names: dict[str, int], extended: int) -> list[str]:
    """pyte names the 16 basic colours and gives the 256-colour and true ones as hex."""
    if value == "default":
        return []
    if value in names:
        return [str(names[value])]
    if len(value) == 6:
        red, green, blue = (int(value[index : index + 2], 16) for index in (0, 2, 4))
        return [f"{extended};2;{red};{green};{blue}"]
    return []


def _modes(modes: Modes) -> Iterator[str]:
    for mode in TRACKED_MODES:
        if modes.private.get(mode, False) != DEFAULT_MODES.get(mode, False):
            yield f"\x1b[?{mode}{'h' if modes.private.get(mode, False) else 'l'}"
    if modes.keypad_application:
        yield "\x1b="
