"""A terminal's size among several controllers (app/processes/window.py): the two rules."""

from __future__ import annotations

from app.processes.window import Window


def test_latest_takes_the_last_size_sent_and_falls_back_when_its_sender_leaves() -> None:
    window = Window("latest", (24, 80))
    assert window.set("a", (24, 80)) == (24, 80)
    assert window.set("b", (50, 200)) == (50, 200)
    assert window.set("c", (30, 100)) == (30, 100)
    assert window.set("b", (40, 120)) == (40, 120)  # b again: now the latest
    assert window.forget("b") == (30, 100)  # back to c, the one that sized it before
    assert window.forget("a") == (30, 100)  # a was not the latest: nothing changes
    assert window.forget("c") == window.size  # nobody left: the terminal keeps its size


def test_smallest_takes_the_fewest_rows_and_the_fewest_columns_apart() -> None:
    window = Window("smallest", (24, 80))
    assert window.set("a", (50, 100)) == (50, 100)
    assert window.set("b", (30, 200)) == (30, 100)  # rows from b, columns from a
    assert window.set("c", (40, 90)) == (30, 90)
    assert window.forget("b") == (40, 90)
    assert window.set("c", (60, 300)) == (50, 100)  # c grew: a is now the smallest both ways
    assert window.forget("a", "c") == window.size


def test_a_controller_that_never_sized_it_changes_nothing_when_forgotten() -> None:
    window = Window("smallest", (24, 80))
    window.size = window.set("a", (20, 70))
    assert window.forget("nobody") == (20, 70)


def test_the_controllers_of_one_node_are_found_by_their_prefix() -> None:
    window = Window("smallest", (24, 80))
    for name, size in (("host:1:10/aa", (20, 70)), ("host:1:10/bb", (30, 60)), ("host:2:11/cc", (40, 90))):
        window.set(name, size)
    lost = window.controllers_of("host:1:10/")
    assert sorted(lost) == ["host:1:10/aa", "host:1:10/bb"]
    assert window.forget(*lost) == (40, 90)
    assert window.shown == {"rows": 24, "cols": 80}  # the size is the caller's to take
