"""The CLI's terminal helpers without a server: the ~. escape and the modes to restore."""

from __future__ import annotations

import pytest

from procwire_client.terminal import LEAVE_ALTERNATE_SCREEN, RESTORE_MODES, Escape, ScreenModes


@pytest.mark.parametrize(
    ("chunks", "sent", "left"),
    [
        ([b"~."], b"", True),
        ([b"ls\r", b"~."], b"ls\r", True),
        ([b"a~."], b"a~.", False),  # not at the start of a line
        ([b"~~"], b"~", False),
        ([b"~", b"."], b"", True),  # cut between two reads
        ([b"~x"], b"~x", False),
    ],
)
def test_escape(chunks: list[bytes], sent: bytes, left: bool) -> None:
    escape = Escape()
    out = b""
    leaving = False
    for chunk in chunks:
        data, leaving = escape.feed(chunk)
        out += data
    assert (out, leaving) == (sent, left)


def test_the_alternate_screen_is_left_only_when_the_program_is_on_it() -> None:
    modes = ScreenModes()
    assert modes.restore_sequence() == RESTORE_MODES
    modes.feed(b"text\x1b[?1049h more")
    assert modes.restore_sequence() == LEAVE_ALTERNATE_SCREEN + RESTORE_MODES
    modes.feed(b"\x1b[?1049l")
    assert not modes.alternate


def test_a_mode_cut_between_two_chunks_is_seen() -> None:
    modes = ScreenModes()
    modes.feed(b"abc\x1b[?10")
    modes.feed(b"49h")
    assert modes.alternate
    modes.feed(b"\x1b[?47;1")
    modes.feed(b"l")
    assert not modes.alternate
