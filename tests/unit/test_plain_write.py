"""The hand-checked fast path of ``write`` accepts exactly what WriteParams accepts in that shape."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.protocol import methods
from app.protocol.params import WriteParams

SHAPES: list[dict[str, Any]] = [
    {"proc": 1, "data": "hello\n"},
    {"proc": 7, "data": ""},
    {"proc": 3, "data": "é ☃ \x00"},
    {"proc": 0, "data": "x"},
    {"proc": -1, "data": "x"},
    {"proc": True, "data": "x"},
    {"proc": 1.0, "data": "x"},
    {"proc": "1", "data": "x"},
    {"proc": 1, "data": b"x"},
    {"proc": 1, "data": None},
    {"proc": 1},
    {"data": "x"},
    {"proc": 1, "data": "x", "encoding": "text"},
    {"proc": 1, "data": "eA==", "encoding": "base64"},
    {"proc": 1, "date": "x"},
]


def plain(raw: dict[str, Any]) -> WriteParams | None:
    """What the model makes of ``raw`` when it is a plain text write, else None."""
    try:
        params = WriteParams.model_validate(raw)
    except ValidationError:
        return None
    return params if params.encoding == "text" and set(raw) == {"proc", "data"} else None


@pytest.mark.parametrize("raw", SHAPES)
def test_the_fast_path_takes_exactly_the_plain_writes(raw: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[tuple[int, bytes]] = []
    monkeypatch.setattr(methods, "write_stdin", lambda caller, proc, data: written.append((proc, data)))
    fast = methods.METHODS["write"].fast
    assert fast is not None
    took = fast(None, raw) is not NotImplemented  # type: ignore[arg-type]
    params = plain(raw)
    assert took == (params is not None)
    assert written == ([(params.proc, params.data.encode())] if params is not None else [])
