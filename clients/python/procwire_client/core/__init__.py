"""The sans-I/O core shared by the sync and asyncio clients: frames in, events out.

See :class:`~procwire_client.core.protocol.Protocol`; nothing here touches a
socket, a thread or an event loop.
"""

from procwire_client.core.events import Answered, Event, Exited, Failed, Hello, Output, Screen, StrayError
from procwire_client.core.protocol import BINARY_HEADER, Limits, Protocol, ProtocolError

__all__ = [
    "BINARY_HEADER",
    "Answered",
    "Event",
    "Exited",
    "Failed",
    "Hello",
    "Limits",
    "Output",
    "Protocol",
    "ProtocolError",
    "Screen",
    "StrayError",
]
