"""What the sharing tests share: tokens, the audit log, share connections, reading output (no tests here)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket

from tests.client import RpcClient
from tests.server import wait_until

PERMISSION_DENIED = -32003
ALICE, BOB = "alice-token-0123456789", "bob-token-0123456789"
POLICY = {"allow": ["/usr/bin/*", "/bin/*"], "cwd_roots": ["/"], "pty": True}


def users_env(directory: Path) -> dict[str, str]:
    tokens = [
        {"name": name, "role": "user", "sha256": hashlib.sha256(token.encode()).hexdigest(), "policy": POLICY}
        for name, token in (("alice", ALICE), ("bob", BOB))
    ]
    return {
        "PROCWIRE_TOKENS": json.dumps(tokens),
        "PROCWIRE_AUDIT_LOG": str(directory / "audit.log"),
        "PROCWIRE_KILL_GRACE": "0.5",
    }


def audit_lines(directory: Path) -> list[dict[str, Any]]:
    path = directory / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def audited(directory: Path, **fields: Any) -> bool:
    """Whether an audit line with these fields is written (within a few seconds)."""

    def present() -> bool:
        return any(all(line.get(key) == value for key, value in fields.items()) for line in audit_lines(directory))

    return wait_until(present, timeout=5)


@contextlib.contextmanager
def connected(url: str, token: str | None) -> Iterator[RpcClient]:
    client = RpcClient(url, token)
    try:
        yield client
    finally:
        client.close()


def share_connection(link: str) -> RpcClient:
    return RpcClient(link, None)


def upgrade_status(url: str, header: list[str] | None = None) -> int:
    """The HTTP status of a refused upgrade."""
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, timeout=10, header=header or []).close()
    return refused.value.status_code


def started_cat(client: RpcClient) -> int:
    proc: int = client.call("start", argv=["cat"], pty={"rows": 24, "cols": 80})["proc"]
    return proc


def pid_of(client: RpcClient, proc: int) -> int:
    pids = {item["proc"]: item["pid"] for item in client.call("list")["processes"]}
    return int(pids[proc])


def read_output(client: RpcClient, proc: int, expected: bytes, timeout: float = 10) -> bytes:
    """Output of ``proc`` until ``expected`` is in it (bounded); other messages stay queued."""
    seen = bytearray()
    deadline = time.monotonic() + timeout
    kept: list[Any] = []
    client.ws.settimeout(timeout)
    try:
        while expected not in seen:
            assert time.monotonic() < deadline, f"no {expected!r} in {bytes(seen)!r}"
            message = client.next_message()
            params = message.get("params", {}) if isinstance(message, dict) else {}
            if message.get("method") == "output" and params.get("proc") == proc:
                seen += params["data"].encode()
            else:
                kept.append(message)
    finally:
        client.pending.extendleft(reversed(kept))
    return bytes(seen)


def notification(client: RpcClient, method: str, match: Any = lambda params: True, timeout: float = 10) -> Any:
    """The next ``method`` notification whose params ``match`` (others stay queued)."""
    deadline = time.monotonic() + timeout
    kept: list[Any] = []
    try:
        while time.monotonic() < deadline:
            message = client.next_message()
            if isinstance(message, dict) and message.get("method") == method and match(message["params"]):
                return message["params"]
            kept.append(message)
        raise AssertionError(f"no {method} notification in time")
    finally:
        client.pending.extendleft(reversed(kept))


# -- view attachments ---------------------------------------------------------------------------


def error_without_id(client: RpcClient) -> dict[str, Any]:
    """The next error answer with id null (other messages stay queued)."""
    kept: list[Any] = []
    try:
        while True:
            message = client.next_message()
            if isinstance(message, dict) and "error" in message:
                return message
            kept.append(message)
    finally:
        client.pending.extendleft(reversed(kept))
