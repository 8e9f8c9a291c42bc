"""The params of procwire's methods, built from a client call's arguments.

Shared by the sync and asyncio clients so that both send exactly the same
requests for the same call.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from procwire_client.core.protocol import JSON_SLACK
from procwire_client.errors import InvalidParams

DEFAULT_RUN_MAX_OUTPUT = 16 * 1024 * 1024
OVERFLOW_CHOICES = ("raise", "truncate")
MODES = ("view", "control")  # of an attachment and of a share link


def as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def data_param(data: bytes, limit: int, key: str = "data", encoding_key: str = "encoding") -> dict[str, str]:
    """Bytes as text when they are UTF-8 (and their JSON fits in ``limit``), else base64."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        # JSON escapes control characters as \u00XX: check the size only when that could matter.
        if (
            len(data) * 6 + JSON_SLACK <= limit
            or len(json.dumps(text, ensure_ascii=False).encode()) + JSON_SLACK <= limit
        ):
            return {key: text}
    return {key: base64.b64encode(data).decode("ascii"), encoding_key: "base64"}


def spawn_params(
    argv: Sequence[str],
    env: Mapping[str, str | None] | None = None,
    clear_env: bool = False,
    cwd: str | os.PathLike[str] | None = None,
    stdin: str = "pipe",
    stderr: str = "pipe",
    timeout: float | None = None,
    encoding: str = "text",
    name: str | None = None,
) -> dict[str, Any]:
    """What ``start`` and ``run`` share; defaults are left out of the request."""
    if isinstance(argv, str | bytes):
        raise TypeError("argv is a list of strings, such as ['sh', '-c', 'echo hi']")
    params: dict[str, Any] = {"argv": [os.fspath(arg) for arg in argv]}
    optional = {
        "env": dict(env) if env else None,
        "clear_env": True if clear_env else None,
        "cwd": os.fspath(cwd) if cwd is not None else None,
        "stdin": stdin if stdin != "pipe" else None,
        "stderr": stderr if stderr != "pipe" else None,
        "timeout": timeout,
        "encoding": encoding if encoding != "text" else None,
        "name": name,
    }
    params.update({key: value for key, value in optional.items() if value is not None})
    return params


def start_params(
    spawn: dict[str, Any],
    *,
    binary: bool = False,
    pty: Any = None,
    on_disconnect: str | None = None,
    buffer: int | None = None,
    command: str | None = None,
    size_rule: str | None = None,
    record: bool | Mapping[str, bool] | None = None,
) -> dict[str, Any]:
    """``start``'s params: the spawn params and the ones only ``start`` takes
    (``record``: ``True``, or ``{"input": True}`` to record stdin too)."""
    params = dict(spawn)
    if binary:
        params["binary"] = True
    if pty is not None and pty is not False:
        rows, cols = pty_size(pty)
        params["pty"] = {"rows": rows, "cols": cols}
    optional = {
        "on_disconnect": on_disconnect,
        "buffer": buffer,
        "command": command,
        "size_rule": size_rule,
        "record": record or None,
    }
    params.update({key: value for key, value in optional.items() if value is not None})
    return params


def pty_size(pty: Any) -> tuple[int, int]:
    if pty is True:
        return 24, 80
    if isinstance(pty, Mapping):
        return int(pty["rows"]), int(pty["cols"])
    rows, cols = pty
    return int(rows), int(cols)


def run_params(
    spawn: dict[str, Any], data: bytes | None, max_output: int | None, on_overflow: str, limit: int
) -> tuple[dict[str, Any], bool]:
    """``run``'s params, and whether ``input`` is too large for one message (then
    the client streams it through ``start`` and leaves it out of the params)."""
    if on_overflow not in OVERFLOW_CHOICES:
        raise ValueError(f"on_overflow is 'raise' or 'truncate', not {on_overflow!r}")
    if data is not None and spawn.get("stdin") == "null":
        raise InvalidParams("Invalid params: input: cannot be given with stdin: null")
    params = dict(spawn)
    if max_output is not None:
        params["max_output"] = max_output
    if data is None:
        return params, False
    inline = data_param(data, limit, "input", "input_encoding")
    if sum(len(value) for value in inline.values()) + JSON_SLACK > limit:
        return params, True
    params.update(inline)
    return params, False


def attach_params(
    proc: int,
    offset: int | Mapping[str, int] | None,
    binary: bool | None,
    encoding: str | None,
    snapshot: bool,
    mode: str | None = None,
) -> dict[str, Any]:
    params: dict[str, Any] = {"proc": proc}
    if mode is not None:
        if mode not in MODES:
            raise ValueError(f"mode is 'view' or 'control', not {mode!r}")
        params["mode"] = mode
    if offset is not None:
        params["offset"] = offset if isinstance(offset, int) else dict(offset)
    if binary is not None:
        params["binary"] = binary
    if encoding is not None:
        params["encoding"] = encoding
    if snapshot:
        params["snapshot"] = True
    return params


def share_params(proc: int, mode: str, expires_in: float | None, single_use: bool) -> dict[str, Any]:
    """``share``'s params: the server's defaults (an hour, many uses) unless given."""
    if mode not in MODES:
        raise ValueError(f"mode is 'view' or 'control', not {mode!r}")
    params: dict[str, Any] = {"proc": proc, "mode": mode}
    if expires_in is not None:
        params["expires_in"] = expires_in
    if single_use:
        params["single_use"] = True
    return params


def share_link(link: str) -> tuple[str, str]:
    """The server URL and the token of a share link (``ws://host/ws?share=TOKEN``)."""
    parts = urlsplit(link)
    tokens = parse_qs(parts.query).get("share")
    if parts.scheme not in ("ws", "wss") or not tokens:
        raise ValueError(f"not a share link (ws://HOST/ws?share=TOKEN): {link!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), tokens[0]
