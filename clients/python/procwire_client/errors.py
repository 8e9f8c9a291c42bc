"""Exceptions of the procwire client.

Every error answer of the server becomes a :class:`ProcwireError` subclass
chosen by its JSON-RPC code (``.code``, ``.message``, ``.data``); a failed or
lost connection is a :class:`ProcwireConnectionError` (a :class:`ConnectionError`).
"""

from __future__ import annotations

from typing import Any


class ProcwireError(Exception):
    """An error answer from the server (or a local timeout, see :class:`Timeout`)."""

    code: int | None = None

    def __init__(self, message: str, data: Any = None, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code}, data={self.data!r})"


class ParseError(ProcwireError):
    code = -32700


class InvalidRequest(ProcwireError):
    code = -32600


class MethodNotFound(ProcwireError):
    code = -32601


class InvalidParams(ProcwireError):
    code = -32602


class InternalError(ProcwireError):
    code = -32603


class NotFound(ProcwireError):
    """The executable does not exist or is not in ``PATH``."""

    code = -32001


class NoSuchProcess(ProcwireError):
    code = -32002


class PermissionDenied(ProcwireError):
    """Not executable, a directory, or an unusable ``cwd``."""

    code = -32003


class LimitExceeded(ProcwireError):
    """Too many processes, a stdin chunk too large, or the stdin buffer full."""

    code = -32004


class ProcessExited(ProcwireError):
    """The process has exited, or its stdin is closed."""

    code = -32005


class Timeout(ProcwireError, TimeoutError):
    """A ``wait`` timed out on the server, or a client-side wait did."""

    code = -32006


class SpawnFailed(ProcwireError):
    code = -32007


class ProcessRunning(ProcwireError):
    code = -32008


class ClusterUnavailable(ProcwireError):
    """The process runs on another node, and Redis or that node cannot be reached now."""

    code = -32009


ERRORS_BY_CODE: dict[int, type[ProcwireError]] = {
    cls.code: cls
    for cls in (
        ParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        InternalError,
        NotFound,
        NoSuchProcess,
        PermissionDenied,
        LimitExceeded,
        ProcessExited,
        Timeout,
        SpawnFailed,
        ProcessRunning,
        ClusterUnavailable,
    )
    if cls.code is not None
}


def error_from_json(error: Any) -> ProcwireError:
    """The exception for a JSON-RPC ``error`` object."""
    if not isinstance(error, dict):
        return ProcwireError(f"malformed error answer: {error!r}")
    code = error.get("code")
    message = str(error.get("message", "unknown error"))
    cls = ERRORS_BY_CODE.get(code, ProcwireError) if isinstance(code, int) else ProcwireError
    return cls(message, error.get("data"), code=code if isinstance(code, int) else None)


class ProcwireConnectionError(ConnectionError):
    """The connection could not be made, or it ended.

    ``status`` is the HTTP status of a refused handshake (401 for a wrong
    token, 403 for a refused origin); ``close_code`` and ``close_reason`` come
    from the server's Close frame when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        close_code: int | None = None,
        close_reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.close_code = close_code
        self.close_reason = close_reason

    def __str__(self) -> str:
        return self.message


class AuthenticationError(ProcwireConnectionError):
    """The server refused the token (HTTP 401)."""


class OutputTruncated(ProcwireError):
    """:meth:`~procwire_client.Client.run` kept only ``max_output`` bytes of a stream.

    ``result`` is the partial :class:`~procwire_client.Result` (its
    ``truncated`` says which streams were cut).  Pass ``on_overflow="truncate"``
    to get that result returned instead.
    """

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message)
        self.result = result
