"""The screen snapshot (app/protocol/screen.py): painting what a terminal shows, not replaying it."""

from __future__ import annotations

import pyte
from hypothesis import given, settings
from hypothesis import strategies as st

from app.protocol.screen import SLICE, WINDOW, modes_of, render, window_start

ROWS, COLS = 10, 40


def shown(data: bytes, rows: int = ROWS, cols: int = COLS) -> tuple[list[str], list[list[tuple]], tuple[int, int]]:
    """What a terminal fed ``data`` displays: its text, every cell's attributes, the cursor."""
    screen = pyte.Screen(cols, rows)
    pyte.ByteStream(screen).feed(data)
    cells = [[tuple(screen.buffer[y][x])[1:] for x in range(cols)] for y in range(rows)]
    return screen.display, cells, (screen.cursor.y, min(screen.cursor.x, cols - 1))


def assert_paints_the_same(history: bytes) -> None:
    painted = render(history, ROWS, COLS).encode()
    assert shown(b"garbage on the client's screen\r\n" * 3 + painted) == shown(history)


def test_a_long_scrolled_history_paints_only_the_last_screen() -> None:
    history = b"".join(b"line %d\r\n" % number for number in range(5000)) + b"$ "
    painted = render(history, ROWS, COLS)
    assert "line 4999" in painted and "line 4990" not in painted  # nine lines and the prompt
    assert len(painted) < 400
    assert_paints_the_same(history)


def test_colours_and_attributes_basic_256_and_true_colour() -> None:
    history = (
        b"\x1b[1;31mbold red\x1b[0m plain \x1b[4;44munder on blue\x1b[0m\r\n"
        b"\x1b[38;5;208morange\x1b[0m \x1b[48;2;10;20;30mtrue bg\x1b[0m \x1b[7mreverse\x1b[27m \x1b[92mbright\r\n"
    )
    painted = render(history, ROWS, COLS)
    assert "\x1b[0;1;31mbold red" in painted
    assert_paints_the_same(history)


def test_cursor_position_and_wide_characters() -> None:
    history = "\x1b[2J\x1b[5;7Hwide: 漢字 ok\x1b[3;2H".encode()
    assert_paints_the_same(history)


def test_modes_set_long_before_the_window_are_restored() -> None:
    history = b"\x1b[?1049h\x1b[?1h\x1b=\x1b[?2004h\x1b[?1000h\x1b[?25l" + b"x" * (WINDOW * 2) + b"\x1b[?1000l"
    modes = modes_of(history)
    assert modes.alternate_screen and modes.keypad_application
    painted = render(history, ROWS, COLS)
    assert "\x1b[?1049h" in painted and "\x1b[?1h" in painted and "\x1b[?2004h" in painted
    assert "\x1b[?25l" in painted and "\x1b=" in painted
    assert "\x1b[?1000h" not in painted  # turned off again at the end


def test_a_full_reset_forgets_earlier_modes() -> None:
    assert modes_of(b"\x1b[?1h\x1b[?25l\x1bc").private == {25: True}


def test_emulation_starts_at_the_last_full_clear_or_a_clean_boundary() -> None:
    history = b"old screen\r\n" * 10 + b"\x1b[H\x1b[2Jnew screen"
    assert history[window_start(history) :].startswith(b"\x1b[H\x1b[2J")
    long = b"a" * WINDOW + b"b\x1b[1mc" + b"d" * (WINDOW - 200)  # the window starts 195 bytes before the escape
    start = window_start(long)
    assert start > 0 and long[start:].startswith(b"\x1b[1mc")


def test_the_event_loop_gets_a_turn_between_slices() -> None:
    pauses: list[None] = []
    render(b"x\r\n" * 200_000, ROWS, COLS, pause=lambda: pauses.append(None))
    assert WINDOW // SLICE - 1 <= len(pauses) <= WINDOW // SLICE + 1  # only the window is emulated, in slices


printable = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=30)
pieces = st.one_of(
    printable.map(str.encode),
    st.sampled_from([b"\r\n", b"\r", b"\x1b[0m", b"\x1b[1m", b"\x1b[31m", b"\x1b[44m", b"\x1b[7m", b"\x1b[2K"]),
    st.tuples(st.integers(1, ROWS), st.integers(1, COLS)).map(lambda at: b"\x1b[%d;%dH" % at),
    st.integers(0, 255).map(lambda index: b"\x1b[38;5;%dm" % index),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(pieces, max_size=60))
def test_any_history_paints_the_same_screen(parts: list[bytes]) -> None:
    assert_paints_the_same(b"".join(parts))
