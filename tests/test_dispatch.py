"""Dispatch without a network: what a failing method turns into."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.edge.session import Session
from app.protocol.jsonrpc import Call
from app.protocol.methods import METHODS, Method
from app.protocol.params import NoParams


def explode(session: object, params: NoParams) -> None:
    raise ZeroDivisionError("division by zero")


def bare_session() -> object:
    """What ``_answer`` reads of its session before the method: an owner's identity, no view attachment."""
    return SimpleNamespace(identity=SimpleNamespace(share=None), modes={})


def test_an_exception_inside_a_method_becomes_a_short_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(METHODS, "explode", Method(NoParams, explode))
    answer = Session._answer(bare_session(), Call(id=7, method="explode"))  # type: ignore[arg-type]
    assert answer == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {"code": -32603, "message": "Internal error: ZeroDivisionError"},
    }


def test_a_failing_notification_is_not_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(METHODS, "explode", Method(NoParams, explode))
    assert Session._answer(bare_session(), Call(method="explode")) is None  # type: ignore[arg-type]
