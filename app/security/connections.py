"""How many WebSocket connections each token and each remote address holds.

A slot is taken before the upgrade (``before_request``), so a connection over
``MAX_CONNECTIONS_PER_TOKEN`` or ``MAX_CONNECTIONS_PER_ADDRESS`` gets HTTP 429
and never a socket; it is given back when the request ends.  Counts are per
worker; in a cluster, the token's connections on other nodes count too
(as their nodes last wrote them: see docs/scaling.md).  0 means no limit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ConnectionSlots:
    per_token: Counter[str] = field(default_factory=Counter)
    per_address: Counter[str] = field(default_factory=Counter)

    def take(
        self, token: str, address: str | None, max_per_token: int, max_per_address: int, elsewhere: int = 0
    ) -> tuple[str, str] | None:
        """Take a slot, or say why not: the limit's name and a message naming it.
        ``elsewhere``: the token's connections on other nodes of a cluster."""
        if max_per_token and self.per_token[token] + elsewhere >= max_per_token:
            rule = "MAX_CONNECTIONS_PER_TOKEN"
            return rule, f"too many connections for token {token}: at most {max_per_token} ({rule})"
        address = address or "unknown"
        if max_per_address and self.per_address[address] >= max_per_address:
            rule = "MAX_CONNECTIONS_PER_ADDRESS"
            return rule, f"too many connections from {address}: at most {max_per_address} ({rule})"
        self.per_token[token] += 1
        self.per_address[address] += 1
        return None

    def release(self, token: str, address: str | None) -> None:
        address = address or "unknown"
        for counter, key in ((self.per_token, token), (self.per_address, address)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]


slots = ConnectionSlots()
