"""Helpers of the recording tests: fetching over HTTP, reading both formats back, checking asciicast v2."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

from tests.server import LoopbackAddress

EVENT_CODES = {"o", "i", "r", "m"}


def api(server: LoopbackAddress, token: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` with ``token``: the status and the body (errors included)."""
    request = urllib.request.Request(server.http + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def listed(server: LoopbackAddress, token: str) -> dict[str, dict[str, Any]]:
    status, body = api(server, token, "/api/recordings")
    assert status == 200, body
    return {meta["id"]: meta for meta in json.loads(body)["recordings"]}


def fetched(server: LoopbackAddress, token: str, recording: str) -> bytes:
    status, body = api(server, token, f"/api/recordings/{recording}")
    assert status == 200, body
    return body


def lines(data: bytes) -> list[Any]:
    assert data.endswith(b"\n"), data[-200:]  # whole lines only, the last one too
    return [json.loads(line) for line in data.splitlines()]


def asciicast(data: bytes) -> tuple[dict[str, Any], list[list[Any]]]:
    """Header and events of an asciicast v2 file, checked against the format:
    https://docs.asciinema.org/manual/asciicast/v2/ (asciinema's src/asciicast/v2.rs reads the same)."""
    header, *events = lines(data)
    assert header["version"] == 2
    assert isinstance(header["width"], int) and header["width"] > 0
    assert isinstance(header["height"], int) and header["height"] > 0
    assert isinstance(header["timestamp"], int)
    previous = 0.0
    for event in events:
        assert isinstance(event, list) and len(event) == 3, event
        time, code, text = event
        assert isinstance(time, int | float) and time >= previous, (previous, event)
        assert code in EVENT_CODES and isinstance(text, str), event
        if code == "r":
            cols, rows = text.split("x")
            assert int(cols) > 0 and int(rows) > 0
        previous = time
    return header, events


def terminal_output(events: list[list[Any]], code: str = "o") -> bytes:
    return "".join(text for _time, event_code, text in events if event_code == code).encode()


def pipes(data: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Header and events of a pipes recording; times never go back, offsets follow each stream's bytes."""
    header, *events = lines(data)
    assert header["format"] == "procwire-pipes" and header["version"] == 1
    previous = 0.0
    offsets: dict[str, int] = {}
    for event in events:
        assert event["time"] >= previous, (previous, event)
        previous = event["time"]
        if "data" in event:
            assert event["offset"] == offsets.get(event["stream"], 0), event
            offsets[event["stream"]] = event["offset"] + len(chunk(event))
    return header, events


def chunk(event: dict[str, Any]) -> bytes:
    if event.get("encoding") == "base64":
        return base64.b64decode(event["data"])
    return str(event["data"]).encode()


def stream_bytes(events: list[dict[str, Any]], stream: str) -> bytes:
    return b"".join(chunk(event) for event in events if event.get("stream") == stream and "data" in event)
