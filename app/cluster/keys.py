"""Every Redis key and channel of procwire, in one place (listed in docs/scaling.md)."""

from __future__ import annotations

PREFIX = "procwire:"
IDS = PREFIX + "ids"  # string: the top of the last block of proc ids handed out
NODES = PREFIX + "nodes"  # sorted set: node -> time of its last heartbeat (ms)
PROCS = PREFIX + "procs"  # set: every proc id with a record
LOST = PREFIX + "lost"  # channel: names of nodes just declared lost
JANITOR = PREFIX + "janitor"  # string with a TTL: which node sweeps lost nodes now
SHARE_SECRET = PREFIX + "share-secret"  # string: the key share tokens are signed with (the first node sets it)


def share(share_id: str, kind: str = "grant") -> str:
    """A share's grant (JSON), ``revoked`` or ``used`` mark, each expiring with the share."""
    return f"{PREFIX}share:{share_id}:{kind}"


def alive(node: str) -> str:
    """A string that expires unless the node's heartbeat renews it."""
    return f"{PREFIX}alive:{node}"


def node_procs(node: str) -> str:
    """Set: the proc ids a node has recorded."""
    return f"{PREFIX}node:{node}:procs"


def node_clients(node: str) -> str:
    """Hash: client id -> JSON info of a node's connections."""
    return f"{PREFIX}node:{node}:clients"


def node_running(node: str) -> str:
    """Hash: token name -> processes running on a node."""
    return f"{PREFIX}node:{node}:running"


def node_connections(node: str) -> str:
    """Hash: token name -> WebSocket connections open on a node."""
    return f"{PREFIX}node:{node}:connections"


def inbox(node: str) -> str:
    """Channel: requests to a node and answers for it."""
    return f"{PREFIX}inbox:{node}"


def proc(proc_id: int) -> str:
    """Hash: ``node``, ``owner``, ``info`` (JSON), ``offsets`` (JSON), ``exit`` (JSON, once exited)."""
    return f"{PREFIX}proc:{proc_id}"


def owner_procs(owner: str) -> str:
    """Set: the proc ids of one token."""
    return f"{PREFIX}owner:{owner}:procs"


def output(proc_id: int, stream: str) -> str:
    """Stream: a process's output; entry id ``<end offset>-0`` for data, ``<end>-1`` marks the end."""
    return f"{PREFIX}out:{proc_id}:{stream}"
