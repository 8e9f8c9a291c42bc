"""Recordings of other hosts, in cluster mode: what a node answers about its own directory.

Each node of a cluster keeps its recordings in its own ``RECORDINGS_DIR``.
``/api/recordings`` asks every other live node (app.cluster.bus) for the
recordings the viewer may see, and ``/api/recordings/<id>`` fetches a
journal from a node that has it in chunks of ``CHUNK_BYTES`` (base64 in the
bus's JSON answers), and makes the recording's format from it as it comes.
Nodes of one host share the directory: the same recording listed by
several of them is shown once.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

from app.errors import ErrorCode, RpcError
from app.recording.store import Store

CHUNK_BYTES = 512 * 1024


def visible(store: Store, name: str, admin: bool) -> list[dict[str, Any]]:
    """The recordings of ``store`` that this viewer may see: an admin's, all; others' their own."""
    return [meta for meta in store.all() if admin or meta["owner"] == name]


def _listed(store: Store, params: dict[str, Any]) -> list[dict[str, Any]]:
    return visible(store, params["name"], params["admin"])


def _chunk(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``size`` bytes from ``offset`` of a journal (the asking node checked who may read it)."""
    meta = store.read_meta(params["id"])
    if meta is None:
        raise RpcError(ErrorCode.NOT_FOUND, f"no such recording: {params['id']}")
    with open(store.path(meta["id"]), "rb") as file:
        file.seek(params["offset"])
        data = file.read(min(params["size"], CHUNK_BYTES))
    return {"data": base64.b64encode(data).decode("ascii")}


RECORDING_OPS: dict[str, Callable[[Store, dict[str, Any]], Any]] = {
    "recordings": _listed,
    "recording_chunk": _chunk,
}


def remote_chunks(ask: Callable[[dict[str, Any]], Any], recording_id: str) -> Iterator[bytes]:
    """The journal, chunk by chunk, from the node ``ask`` sends requests to."""
    offset = 0
    while True:
        answer = ask({"id": recording_id, "offset": offset, "size": CHUNK_BYTES})
        data = base64.b64decode(answer["data"])
        if not data:
            return
        offset += len(data)
        yield data
