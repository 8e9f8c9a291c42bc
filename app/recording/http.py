"""``/api/recordings``: the recordings a token may see, and each one's file.

Unlike the rest of ``/api/*`` (admins only), any token may list and fetch
recordings: its own, and an admin's every one.  In cluster mode the list
covers every live node (``partial: true`` when one could not answer) and a
file is fetched from whichever node has it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from flask import Blueprint, Response, current_app, g, jsonify

from app.errors import RpcError
from app.recording import store_of
from app.recording.formats import EXTENSIONS, MEDIA_TYPES, render
from app.recording.journal import events, file_chunks
from app.recording.remote import remote_chunks, visible
from app.registry import registry_of
from app.security import audit

bp = Blueprint("recordings", __name__)

FILE_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


@bp.get("/api/recordings")
def listing() -> Response:
    found, partial = everywhere()
    recordings = [meta for meta, _node in sorted(found.values(), key=lambda item: item[0]["started_at"])]
    answer: dict[str, Any] = {"recordings": recordings}
    if partial:
        answer["partial"] = True
    return jsonify(answer)


@bp.get("/api/recordings/<recording_id>")
def fetch(recording_id: str) -> Response | tuple[Response, int]:
    identity = g.identity
    store = store_of(current_app.config["PROCWIRE"])
    meta = store.read_meta(recording_id)
    node = None
    if meta is None or not (identity.is_admin or meta["owner"] == identity.name):
        meta, node = everywhere().found.get(recording_id, (None, None))
    if meta is None:
        return jsonify(error=f"no such recording: {recording_id}"), 404
    audit.event("recording_fetch", token=identity.name, recording=recording_id, owner=meta["owner"])
    if node is None:
        journal = file_chunks(store.path(recording_id))
    else:
        registry = registry_of(current_app)

        def ask(params: dict[str, Any]) -> Any:
            return registry.ask_other_nodes("recording_chunk", params, only=node)[node].get()

        journal = remote_chunks(ask, recording_id)
    kind = meta["format"]
    response = Response(render(meta, events(journal)), mimetype=MEDIA_TYPES[kind], headers=FILE_HEADERS)
    response.headers["Content-Disposition"] = f"inline; filename={recording_id + EXTENSIONS[kind]}"
    return response


class Found(NamedTuple):
    """The recordings a viewer may see on every node, and whether every node answered."""

    found: dict[str, tuple[dict[str, Any], str | None]]  # id -> (metadata, the other node that has it, or None)
    partial: bool  # some node did not answer


def everywhere() -> Found:
    """What ``g.identity`` may see here, then on every other node."""
    identity = g.identity
    registry = registry_of(current_app)
    found: dict[str, tuple[dict[str, Any], str | None]] = {
        meta["id"]: (meta, None)
        for meta in visible(store_of(current_app.config["PROCWIRE"]), identity.name, identity.is_admin)
    }
    partial = False
    try:
        asked = registry.ask_other_nodes("recordings", {"name": identity.name, "admin": identity.is_admin})
    except RpcError:
        return Found(found, True)
    for node, answer in asked.items():
        try:
            metas = answer.get()
        except RpcError:
            partial = True
            continue
        for meta in metas:
            found.setdefault(meta["id"], (meta, node))
    return Found(found, partial)
