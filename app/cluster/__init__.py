"""Cluster mode: every worker of every host sharing one Redis serves every session.

A process stays on the node (worker) that started it.  Its record, the
node's heartbeat and, for kept processes and remote viewers, its output
live in Redis; commands for it travel to its node over that node's channel
and answers come back on the sender's.  docs/scaling.md has the keys, the
failure cases and what is promised.
"""
