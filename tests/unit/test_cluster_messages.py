"""app.cluster's pure parts: request framing, records as Redis returns them, the lost status."""

from __future__ import annotations

import orjson
import pytest

from app.cluster.bus import _rpc_error, decode, encode
from app.cluster.feed import entry_end
from app.cluster.remote import INTERNAL_INFO, Record, lost_status
from app.errors import ErrorCode, RpcError
from procwire_client import ExitStatus

INFO = {
    "proc": 7,
    "pid": 4242,
    "pgid": 4242,
    "name": None,
    "argv": ["cat"],
    "cwd": "/",
    "started_at": 1.5,
    "pty": False,
    "on_disconnect": "keep",
    "owner": "alice",
    "encoding": "text",
    "binary": False,
    "streams": ["stdout", "stderr"],
    "client": "c0ffee",
}


@pytest.mark.parametrize("data", [b"", b"plain", b"line\nline\n", bytes(range(256))])
def test_a_request_carries_any_bytes_after_its_header(data: bytes) -> None:
    header = {"kind": "request", "id": 3, "from": "h:1:2", "op": "write", "params": {"proc": 7}}
    assert decode(encode(header, data)) == (header, data)


def test_an_error_answer_keeps_its_code_data_and_refused_flag() -> None:
    error = RpcError(ErrorCode.LIMIT_EXCEEDED, "stdin buffer full", {"queued": 9}, refused_data=True)
    back = _rpc_error(dict(error.to_json(), refused_data=error.refused_data))
    assert (back.code, back.message, back.data, back.refused_data) == (
        ErrorCode.LIMIT_EXCEEDED,
        "stdin buffer full",
        {"queued": 9},
        True,
    )


def record_fields(**extra: bytes) -> dict[bytes, bytes]:
    fields = {b"node": b"h:1:2", b"owner": b"alice", b"info": orjson.dumps(INFO), b"offsets": b'{"stdout":5}'}
    return {**fields, **{name.encode(): value for name, value in extra.items()}}


def test_a_record_is_listed_with_the_fields_of_a_local_process() -> None:
    record = Record.from_hash(record_fields(attached=b"2"))
    assert record is not None
    listed = record.listed()
    assert not set(INTERNAL_INFO) & set(listed)
    assert listed["state"] == "running" and listed["exit"] is None
    assert (listed["offsets"], listed["attached"], listed["node"]) == ({"stdout": 5}, 2, "h:1:2")


def test_an_exited_record_is_listed_exited() -> None:
    status = lost_status(7, 4242, "h:1:2")
    record = Record.from_hash(record_fields(exit=orjson.dumps(status)))
    assert record is not None and record.listed()["state"] == "exited" and record.listed()["exit"] == status


def test_a_hash_without_info_is_no_record() -> None:
    assert Record.from_hash({}) is None
    assert Record.from_hash({b"exit": b"{}"}) is None  # a lost mark written after the record was deleted


def test_the_lost_status_says_nobody_saw_the_end() -> None:
    status = lost_status(7, 4242, "h:1:2")
    assert status["lost"] is True and status["node"] == "h:1:2"
    assert status["code"] is None and status["signal"] is None and status["output_incomplete"] is True


def test_stream_entry_ids_are_end_offsets() -> None:
    assert entry_end(b"1048576-0") == 1048576
    assert entry_end(b"12-1") == 12


def test_the_client_library_reads_a_lost_status() -> None:
    status = ExitStatus.from_json(lost_status(7, 4242, "h:1:2"))
    assert status.lost is True and status.node == "h:1:2" and status.code is None
    assert status.exit_code == 255  # no code, no signal: what the CLI exits with
