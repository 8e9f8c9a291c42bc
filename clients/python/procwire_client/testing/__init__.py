"""Real procwire servers for tests (docs/testing.md): what ``procwire_client.pytest_plugin``'s
fixtures are made of, usable without pytest too.  Needs the server's distribution (``procwire``)
installed beside the client; this package itself imports neither the server nor pytest.
"""

from procwire_client.testing.async_runner import AsyncClientRunner
from procwire_client.testing.launcher import ProcwireServer, ServerFailed, ServerNotInstalled
from procwire_client.testing.leftovers import LeftoverProcessWarning
from procwire_client.testing.pool import ServerPool
from procwire_client.testing.server_settings import ServerSettings, SettingsError

__all__ = [
    "AsyncClientRunner",
    "LeftoverProcessWarning",
    "ProcwireServer",
    "ServerFailed",
    "ServerNotInstalled",
    "ServerPool",
    "ServerSettings",
    "SettingsError",
]
