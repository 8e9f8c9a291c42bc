"""The protocol's error vocabulary, shared by every layer.

Any layer may refuse with an :class:`RpcError`; the edge turns it into the
JSON-RPC error answer.  This module imports nothing of procwire, so the
layers below the protocol can raise it without depending on the protocol.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ErrorCode(IntEnum):
    """JSON-RPC's own codes, then procwire's."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    NOT_FOUND = -32001
    NO_SUCH_PROCESS = -32002
    PERMISSION_DENIED = -32003
    LIMIT_EXCEEDED = -32004
    PROCESS_EXITED = -32005
    TIMEOUT = -32006
    SPAWN_FAILED = -32007
    PROCESS_RUNNING = -32008
    CLUSTER_UNAVAILABLE = -32009


class RpcError(Exception):
    """An error answer: raised anywhere below a method, sent by the endpoint."""

    def __init__(
        self, code: ErrorCode, message: str, data: dict[str, Any] | None = None, *, refused_data: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        # Bytes the client sent were not taken: say so even to a notification.
        self.refused_data = refused_data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": int(self.code), "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error
