"""Python client for procwire: run and control processes over one WebSocket.

    from procwire_client import Client

    with Client("ws://127.0.0.1:9999/ws", token) as client:
        result = client.run(["sh", "-c", "echo hi; exit 3"])
        assert result.code == 3 and result.stdout == b"hi\\n"
        with client.start(["cat"]) as process:
            process.write("hello\\n")
            process.close_stdin()
            for stream, data in process:
                print(stream, data)
            print(process.wait().code)

The asyncio client has the same shape (``async with AsyncClient(url, token)
as client``, ``await client.run(...)``, ``async with client.start(...) as
process``, ``async for stream, data in process``); see docs/clients.md.
Only ``websocket-client`` and ``websockets`` are needed (no Flask, no gevent).
"""

from procwire_client.async_process import AsyncProcess
from procwire_client.asyncio_client import AsyncClient
from procwire_client.connection import DEFAULT_URL
from procwire_client.core.params import share_link
from procwire_client.core.resume import Reconnect
from procwire_client.errors import (
    AuthenticationError,
    ClusterUnavailable,
    InternalError,
    InvalidParams,
    InvalidRequest,
    LimitExceeded,
    MethodNotFound,
    NoSuchProcess,
    NotFound,
    OutputTruncated,
    ParseError,
    PermissionDenied,
    ProcessExited,
    ProcessRunning,
    ProcwireConnectionError,
    ProcwireError,
    SpawnFailed,
    Timeout,
)
from procwire_client.process import Process
from procwire_client.results import Attachment, ExitStatus, ProcessInfo, Result, Share
from procwire_client.sync_client import Client

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_URL",
    "AsyncClient",
    "AsyncProcess",
    "Attachment",
    "AuthenticationError",
    "Client",
    "ClusterUnavailable",
    "ExitStatus",
    "InternalError",
    "InvalidParams",
    "InvalidRequest",
    "LimitExceeded",
    "MethodNotFound",
    "NoSuchProcess",
    "NotFound",
    "OutputTruncated",
    "ParseError",
    "PermissionDenied",
    "Process",
    "ProcessExited",
    "ProcessInfo",
    "ProcessRunning",
    "ProcwireConnectionError",
    "ProcwireError",
    "Reconnect",
    "Result",
    "Share",
    "SpawnFailed",
    "Timeout",
    "__version__",
    "share_link",
]
