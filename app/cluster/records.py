"""A process's record in Redis, one command per event of its life.

Each event (start, exit, forgotten) is one Lua script run by ``EVAL``: the
record, the id indexes and the node's running count change together, and a
start costs the node's writer one command instead of six.  The functions
here only build the commands (no I/O); the writer sends them.
"""

from __future__ import annotations

from typing import Any

import orjson

from app.cluster import keys
from app.processes.process import Process

Command = tuple[Any, ...]
STREAMS = ("stdout", "stderr")
DYNAMIC_INFO = ("state", "exit", "offsets", "attached", "size")  # written apart from the static info

# KEYS: the record, every id, the owner's ids, the node's ids, the node's running counts.
# ARGV: the id, the running increment (0 or 1), the owner, then the record's fields and values.
RECORD = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
for index = 2, 4 do redis.call('SADD', KEYS[index], ARGV[1]) end
if ARGV[2] ~= '0' then redis.call('HINCRBY', KEYS[5], ARGV[3], ARGV[2]) end
"""

# KEYS: the record, the node's running counts.  ARGV: the owner, then the fields that change at the exit.
# A record already forgotten (a process stopped with its connection) is not brought back.
EXITED = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end
redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
"""

# KEYS: the record, its output streams, every id, the node's ids, the owner's ids.  ARGV: the id.
FORGOTTEN = """
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
for index = 4, 6 do redis.call('SREM', KEYS[index], ARGV[1]) end
"""


def record(process: Process, node: str, client_id: str | None) -> Command:
    """Write the whole record (at the start, or again after Redis lost it)."""
    owner = process.options.owner
    info = {key: value for key, value in process.info().items() if key not in DYNAMIC_INFO}
    info.update(
        owner=owner,
        encoding=process.options.encoding,
        binary=process.options.binary,
        streams=process.streams,
        client=client_id,
    )
    fields: list[Any] = ["node", node, "owner", owner, "info", orjson.dumps(info)]
    fields += ["offsets", orjson.dumps(process.offsets), "attached", process.subscribers, *sized(process)[2:]]
    if process.status is not None:
        fields += ["exit", orjson.dumps(process.status)]
    record_keys = (keys.proc(process.id), keys.PROCS, keys.owner_procs(owner), keys.node_procs(node))
    running = 1 if process.running else 0
    return ("EVAL", RECORD, 5, *record_keys, keys.node_running(node), process.id, running, owner, *fields)


def exited(process: Process, node: str) -> Command:
    status, offsets = orjson.dumps(process.status), orjson.dumps(process.offsets)
    fields = ("exit", status, "offsets", offsets, "attached", process.subscribers)
    owner = process.options.owner
    return ("EVAL", EXITED, 2, keys.proc(process.id), keys.node_running(node), owner, *fields)


def forgotten(process: Process, node: str) -> Command:
    return forgotten_record(process.id, process.options.owner, node)


def forgotten_record(proc_id: int, owner: str, node: str) -> Command:
    """Delete a record, its output and its ids (its node may be gone: a lost process released)."""
    process_keys = (keys.proc(proc_id), *(keys.output(proc_id, stream) for stream in STREAMS))
    indexes = (keys.PROCS, keys.node_procs(node), keys.owner_procs(owner))
    return ("EVAL", FORGOTTEN, 6, *process_keys, *indexes, proc_id)


def sized(process: Process) -> Command:
    """A terminal's size, whenever its size rule changes it."""
    return ("HSET", keys.proc(process.id), "size", orjson.dumps(process.info()["size"]))


def progress(process: Process) -> Command:
    """How far a running process has written and who follows it (each heartbeat)."""
    fields = ("offsets", orjson.dumps(process.offsets), "attached", process.subscribers)
    return ("HSET", keys.proc(process.id), *fields)
