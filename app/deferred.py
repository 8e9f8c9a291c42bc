"""Blocking work answered later: the shape of every answer that must wait."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import AsyncResult


def deferred(function: Callable[..., Any], *args: Any) -> AsyncResult:
    """Run ``function`` in its own greenlet; its result or error lands in the AsyncResult.

    Unlike a bare greenlet, an expected RpcError (a ``wait`` that times out)
    is not reported to the hub as a crash.
    """
    result = AsyncResult()

    def run() -> None:
        try:
            result.set(function(*args))
        except Exception as error:
            result.set_exception(error)

    gevent.spawn(run)
    return result
