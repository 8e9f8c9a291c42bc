"""An asyncio client for plain pytest tests: connected on an event loop of its own, which runs
the test's coroutines one at a time (no pytest-asyncio or anyio plugin needed).

    def test_streams(procwire_async_client):
        async def scenario(client: AsyncClient) -> bytes:
            return (await client.run(["echo", "hi"])).stdout

        assert procwire_async_client.run(scenario) == b"hi\\n"

The loop runs only inside ``run``; between two calls the connection waits (websockets answers the
server's pings when the loop next runs: ``PING_INTERVAL`` is 25 s by default).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from procwire_client.asyncio_client import AsyncClient

RUN_TIMEOUT = 60.0  # seconds for one ``run``, unless told otherwise
T = TypeVar("T")


class AsyncClientRunner:
    """``client``: a connected :class:`AsyncClient`; ``run(scenario)`` awaits ``scenario(client)``."""

    def __init__(self, url: str, token: str, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.client = self.loop.run_until_complete(AsyncClient(url, token, **options).connect())
        except BaseException:
            self.loop.close()
            raise

    def run(self, scenario: Callable[[AsyncClient], Coroutine[Any, Any, T]], timeout: float = RUN_TIMEOUT) -> T:
        """``scenario(client)`` run to its end on the loop; its result, or asyncio's TimeoutError."""
        return self.loop.run_until_complete(asyncio.wait_for(scenario(self.client), timeout))

    def close(self) -> None:
        """Close the client, then the loop (after its async generators)."""
        try:
            self.loop.run_until_complete(self.client.close())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()
