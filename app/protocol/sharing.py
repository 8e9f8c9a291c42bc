"""``share`` and ``unshare``: links that let someone else watch or drive one process.

The token itself is made and checked in app/security/shares.py; what its
holder may do once connected, in app/protocol/access.py.  Only the
process's owner or an admin may share it (``lookup`` already refuses
anyone else) and revoke the share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from flask import has_request_context, request
from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr
from redis import RedisError

from app.errors import ErrorCode, RpcError
from app.protocol import params as P
from app.protocol.methods import method
from app.security.shares import UNAVAILABLE, Grant

if TYPE_CHECKING:
    from app.protocol.caller import Caller

Mode = Literal["view", "control"]
MAX_EXPIRES_IN = 7 * 24 * 3600  # a week
DEFAULT_EXPIRES_IN = 3600


class ShareParams(P.ProcParams):
    mode: Mode = "view"
    expires_in: Annotated[StrictInt | StrictFloat, Field(gt=0, le=MAX_EXPIRES_IN)] = DEFAULT_EXPIRES_IN
    single_use: StrictBool = False


class UnshareParams(P.Params):
    id: Annotated[StrictStr, Field(min_length=1, max_length=64)]


@method("share", ShareParams)
def _share(caller: Caller, params: ShareParams) -> dict[str, Any]:
    process = caller.lookup(params.proc)
    try:
        grant, token = caller.shares.issue(
            process.id, process.options.owner, params.mode, params.expires_in, params.single_use
        )
    except UNAVAILABLE as error:
        raise _unavailable(error) from None
    caller.client.audit(
        "share",
        share=grant.id,
        proc=grant.proc,
        owner=grant.owner,
        mode=grant.mode,
        expires_at=round(grant.expires_at, 3),
        single_use=grant.single_use,
    )
    return {"id": grant.id, "token": token, "url": share_url(token), "mode": grant.mode, "expires_at": grant.expires_at}


@method("unshare", UnshareParams)
def _unshare(caller: Caller, params: UnshareParams) -> dict[str, Any]:
    grant = _own_grant(caller, params.id)
    try:
        caller.shares.store.revoke(grant)
    except UNAVAILABLE as error:
        raise _unavailable(error) from None
    caller.client.audit("unshare", share=grant.id, proc=grant.proc, owner=grant.owner)
    caller.shares.watch.end(grant.id, "share revoked")
    return {}


def _own_grant(caller: Caller, share_id: str) -> Grant:
    """The share, if the caller may revoke it (its process's owner, or an admin)."""
    try:
        grant = caller.shares.store.grant(share_id)
    except UNAVAILABLE as error:
        raise _unavailable(error) from None
    if grant is None or not caller.identity.may_see(grant.owner):
        raise RpcError(ErrorCode.NOT_FOUND, f"no such share: {share_id[:64]}", {"id": share_id[:64]})
    return grant


def _unavailable(error: Exception) -> RpcError:
    code = ErrorCode.CLUSTER_UNAVAILABLE if isinstance(error, RedisError) else ErrorCode.INTERNAL_ERROR
    return RpcError(code, f"shares cannot be kept now: {error}")


def share_url(token: str) -> str:
    """The link as this connection reached the server (its host, scheme and prefix)."""
    if not has_request_context():
        return f"/ws?share={token}"
    scheme = "wss" if request.scheme == "https" else "ws"
    return f"{scheme}://{request.host}{request.script_root}/ws?share={token}"
