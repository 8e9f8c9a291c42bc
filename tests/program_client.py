"""Drive a program endpoint as a websocketd client would: messages in, messages out, the close.

Shared by tests/test_programs.py and the websocketd comparisons; every
receive is bounded.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import websocket

TIMEOUT = 10.0
OPCODE_TEXT, OPCODE_BINARY, OPCODE_CLOSE = 0x1, 0x2, 0x8


@dataclass
class Conversation:
    """What a program sent: its messages in order (``str`` text, ``bytes`` binary), then its close."""

    messages: list[str | bytes] = field(default_factory=list)
    close_code: int | None = None  # None: the connection ended without a Close frame
    close_reason: str = ""


def open_program(url: str, token: str | None = None, header: list[str] | None = None) -> websocket.WebSocket:
    headers = list(header or [])
    if token is not None:
        headers.append(f"Authorization: Bearer {token}")
    return websocket.create_connection(url, header=headers, timeout=TIMEOUT, skip_utf8_validation=False)


def read_until_close(ws: websocket.WebSocket, limit: int = 100_000) -> Conversation:
    """Every message until the server's Close (answered), or the end of the connection."""
    conversation = Conversation()
    for _ in range(limit):
        try:
            opcode, data = ws.recv_data(control_frame=True)
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return conversation
        if opcode == OPCODE_CLOSE:
            if len(data) >= 2:
                conversation.close_code = int.from_bytes(data[:2], "big")
                conversation.close_reason = data[2:].decode("utf-8")
            ws.close()
            return conversation
        if opcode == OPCODE_TEXT:
            conversation.messages.append(data.decode("utf-8"))
        elif opcode == OPCODE_BINARY:
            conversation.messages.append(bytes(data))
    raise AssertionError(f"more than {limit} messages")


def converse(url: str, token: str | None = None, send: list[str | bytes] | None = None, **options: Any) -> Conversation:
    ws = open_program(url, token, **options)
    try:
        for message in send or []:
            if isinstance(message, bytes):
                ws.send_binary(message)
            else:
                ws.send(message)
        return read_until_close(ws)
    finally:
        ws.close()


def refused_status(url: str, token: str | None = None, header: list[str] | None = None) -> tuple[int, str]:
    """The HTTP status and error of an upgrade the server refuses (it must refuse)."""
    try:
        open_program(url, token, header).close()
    except websocket.WebSocketBadStatusException as error:
        body = error.resp_body.decode() if isinstance(error.resp_body, bytes) else str(error.resp_body)
        return error.status_code, json.loads(body)["error"]
    raise AssertionError(f"{url} was not refused")


def http_json(url: str, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)
