"""Presence bookkeeping of one user: which sockets are open on which gateway, and the transitions.

Plain Python, unit-tested. Online while any socket is open (multi-device); ``last_seen`` is set when the last
one closes. ``version`` grows with every transition (wall-clock based, so it keeps growing across a shard
restart) and lets gateways drop a stale snapshot that raced a live transition.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field


def _next_version(previous: int) -> int:
    return max(previous + 1, time.time_ns())


@dataclass
class Presence:
    connections: dict[str, set[str]] = field(default_factory=dict)
    last_seen: dt.datetime | None = None
    version: int = 0

    @property
    def online(self) -> bool:
        return any(self.connections.values())

    def socket_count(self, gateway: str | None = None) -> int:
        if gateway is not None:
            return len(self.connections.get(gateway, ()))
        return sum(len(s) for s in self.connections.values())

    def gateways(self) -> list[str]:
        return [gw for gw, socks in self.connections.items() if socks]

    def add(self, gateway: str, socket_id: str) -> bool:
        """Register a socket; True when this made the user come online."""
        was_online = self.online
        self.connections.setdefault(gateway, set()).add(socket_id)
        return self._transition(was_online)

    def remove(self, gateway: str, socket_id: str, now: dt.datetime) -> bool:
        """Forget a socket; True when this made the user go offline."""
        was_online = self.online
        sockets = self.connections.get(gateway)
        if sockets is not None:
            sockets.discard(socket_id)
            if not sockets:
                del self.connections[gateway]
        return self._transition(was_online, now)

    def replace_gateway(self, gateway: str, sockets: set[str], now: dt.datetime) -> bool:
        """Set exactly the sockets a gateway holds (re-registration); True on an online/offline transition."""
        was_online = self.online
        if sockets:
            self.connections[gateway] = set(sockets)
        else:
            self.connections.pop(gateway, None)
        return self._transition(was_online, now)

    def _transition(self, was_online: bool, now: dt.datetime | None = None) -> bool:
        if was_online == self.online:
            return False
        if not self.online:
            self.last_seen = now or dt.datetime.now(dt.UTC)
        self.version = _next_version(self.version)
        return True
