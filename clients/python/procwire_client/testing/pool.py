"""The servers of a test session: one per distinct settings, started when first asked for.

Starting gunicorn takes about a second, so tests that ask for the same settings share one server
for the whole session (the leftovers of each test are cleared in between: testing/leftovers.py);
a test that asks for a server of its own gets one, stopped after it.
"""

from __future__ import annotations

from procwire_client.testing.launcher import ProcwireServer
from procwire_client.testing.server_settings import ServerSettings


def launch(settings: ServerSettings) -> ProcwireServer:
    """A running server with ``settings``."""
    return ProcwireServer(env=settings.environment(), users=settings.policies()).start()


class ServerPool:
    """Shared servers keyed by their settings; ``base`` (the ini file's) under every request."""

    def __init__(self, base: ServerSettings) -> None:
        self.base = base
        self._servers: dict[ServerSettings, ProcwireServer] = {}

    def shared(self, settings: ServerSettings | None = None) -> ProcwireServer:
        """The session's server with ``settings`` (on top of ``base``), started if none runs yet."""
        wanted = self.base.merged(settings or ServerSettings())
        if wanted not in self._servers or not self._servers[wanted].running:  # never, or a test stopped it
            self._servers[wanted] = launch(wanted)
        return self._servers[wanted]

    def own(self, settings: ServerSettings | None = None) -> ProcwireServer:
        """A new server with ``settings`` (on top of ``base``), for the caller to stop."""
        return launch(self.base.merged(settings or ServerSettings()))

    def close(self) -> None:
        """Stop every shared server (each ends the processes it still runs)."""
        while self._servers:
            self._servers.popitem()[1].stop()
