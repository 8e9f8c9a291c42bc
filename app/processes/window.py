"""A terminal's size when several controllers share it.

Each controlling connection's last size is remembered; the terminal takes
the size its rule picks among them: ``latest``, the size most recently
sent (a client that leaves hands the terminal back to the one that sized
it before), or ``smallest``, tmux's rule: the fewest rows and the fewest
columns any of them asked for, so that every screen shows the whole
terminal.  A controller that detaches or disconnects stops counting.  With
nobody left, the terminal keeps the size it has.
"""

from __future__ import annotations

from typing import Literal

SizeRule = Literal["latest", "smallest"]
Size = tuple[int, int]  # (rows, cols)


class Window:
    def __init__(self, rule: SizeRule, size: Size) -> None:
        self.rule = rule
        self.size = size
        self._sizes: dict[str, Size] = {}  # by controller, the most recent last

    @property
    def shown(self) -> dict[str, int]:
        """The size as the protocol shows it."""
        return {"rows": self.size[0], "cols": self.size[1]}

    def set(self, controller: str, size: Size) -> Size:
        """``controller`` asks for ``size``: the size the terminal must take now."""
        self._sizes.pop(controller, None)
        self._sizes[controller] = size
        return self._chosen()

    def forget(self, *controllers: str) -> Size:
        """``controllers`` detached or left: the size the terminal must take now."""
        for controller in controllers:
            self._sizes.pop(controller, None)
        return self._chosen()

    def controllers_of(self, prefix: str) -> list[str]:
        """The controllers whose names begin with ``prefix`` (those of one cluster node)."""
        return [controller for controller in self._sizes if controller.startswith(prefix)]

    def _chosen(self) -> Size:
        if not self._sizes:
            return self.size
        if self.rule == "latest":
            return next(reversed(self._sizes.values()))
        return min(rows for rows, _ in self._sizes.values()), min(cols for _, cols in self._sizes.values())
