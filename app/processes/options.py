"""How a process is run and reported, beyond what it runs: per process, and the server's limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.processes.window import SizeRule


@dataclass(frozen=True)
class Limits:
    kill_grace: float
    drain_timeout: float
    stdin_buffer_bytes: int


@dataclass(frozen=True)
class Options:
    """How a process is run and reported, beyond what it runs."""

    owner: str = ""
    name: str | None = None
    command: str | None = None  # the command line as the client shows it; None: argv, shell-quoted
    encoding: Literal["text", "base64"] = "text"
    binary: bool = False
    timeout: float | None = None
    keep: bool = False  # on_disconnect: "keep"
    history_bytes: int = 0  # per stream; 0 keeps no history
    size_rule: SizeRule = "latest"  # a terminal's size among several controllers (app.processes.window)
