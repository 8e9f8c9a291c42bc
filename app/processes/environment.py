"""What a child inherits from the server: its environment and working directory.

Copying ``os.environ`` and encoding every variable for execve cost more than
half the fork itself on each start.  The server's own environment and
directory do not change while it runs, so both are read once; a start that
changes nothing in the environment execs with the encoding made then.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass

from config.settings import ENV_PREFIX


@dataclass(frozen=True)
class Environment:
    """A child's environment, and the same as execve takes it (``NAME=value``)."""

    variables: Mapping[str, str]
    encoded: tuple[bytes, ...]

    @classmethod
    def of(cls, variables: Mapping[str, str]) -> Environment:
        return cls(variables, tuple(os.fsencode(f"{name}={value}") for name, value in variables.items()))

    def get(self, name: str) -> str | None:
        return self.variables.get(name)


@functools.cache
def server_environment() -> Environment:
    """The server's environment less procwire's own settings (the token among them)."""
    return Environment.of({name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)})


@functools.cache
def server_directory() -> str:
    """Where a child runs when the request names no ``cwd``."""
    return os.getcwd()


def child_environment(changes: Mapping[str, str | None], clear: bool) -> Environment:
    """The server's environment (or none with ``clear``), then ``changes``: a
    value sets the variable, None removes it."""
    if not changes and not clear:
        return server_environment()
    variables = {} if clear else dict(server_environment().variables)
    for name, value in changes.items():
        if value is None:
            variables.pop(name, None)
        else:
            variables[name] = value
    return Environment.of(variables)
