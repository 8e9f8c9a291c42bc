"""Both Python clients behind one (sync) shape, so each behaviour test is written once.

``AsyncAsSync`` runs the asyncio client's coroutines on an event loop in a
thread of its own and hands back their results: a test body calls
``client.run(...)`` or iterates over a process the same way for both clients.
The behaviour under test is the async client's own: the adapter only awaits.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import procwire_client as pw

BOUND = 15.0


class LoopThread:
    """An event loop running in a daemon thread; ``run`` awaits a coroutine there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 4 * BOUND) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(BOUND)
        self.loop.close()


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class AsyncAsSync:
    """An :class:`AsyncClient` or :class:`AsyncProcess` whose coroutines are run to their result."""

    def __init__(self, target: Any, loop: LoopThread) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value
        return self._blocking(value)

    def _blocking(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            result = self._loop.run(_awaited(function(*args, **kwargs)))
            return AsyncAsSync(result, self._loop) if isinstance(result, pw.AsyncProcess) else result

        return call

    def __repr__(self) -> str:
        return f"AsyncAsSync({self._target!r})"

    # -- a process's iteration and context ----------------------------------------------

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        return self.iter_output()

    def iter_output(self, timeout: float | None = None) -> Iterator[tuple[str, bytes]]:
        iterator = self._target.iter_output(timeout)
        while True:
            try:
                yield self._loop.run(_awaited(iterator.__anext__()))
            except StopAsyncIteration:
                return

    def __enter__(self) -> AsyncAsSync:
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.run(self._target.__aexit__(*exc))


def connect(kind: str, url: str, token: str | None, loop: LoopThread, **options: Any) -> Any:
    """A connected client of ``kind`` ("sync" or "async"), with the sync client's shape."""
    if kind == "sync":
        return pw.Client(url, token, **options)
    return AsyncAsSync(loop.run(pw.AsyncClient(url, token, **options).connect()), loop)
