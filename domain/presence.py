"""Presence bookkeeping of one user: which sockets are open on which gateway, and the transitions.

Plain Python, unit-tested. Online while any socket is open (multi-device); ``last_seen`` is set when the last
one closes. ``version`` grows with every transition (wall-clock based, so it keeps growing across a shard
restart) and lets gateways drop a stale snapshot that raced a live transition.

Registration is versioned: every add and remove a gateway sends carries that gateway's sequence number, and a
re-registration (the gateway's full socket list) carries the number it was taken at. Operations can arrive out
of order (separate batches, retries, a re-registration racing connects and disconnects), so:

* a re-registration older than one already applied is ignored; once applied, it covers every operation
  numbered at or below it, and those are ignored when they arrive late;
* a socket the re-registration does not list stays registered when its own add is newer than the list;
* a removed socket is remembered (a tombstone) until a re-registration covers it or it is old, so a late add
  can never bring it back.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

TOMBSTONE_S = 120.0  # far longer than any shard call may take (their deadline is seconds)


def _next_version(previous: int) -> int:
    return max(previous + 1, time.time_ns())


@dataclass
class GatewaySockets:
    """One gateway's sockets of one user, with the sequence numbers that put them there."""

    present: dict[str, int] = field(default_factory=dict)  # socket id -> seq of its add (or re-registration)
    gone: dict[str, tuple[int, float]] = field(default_factory=dict)  # socket id -> (seq of its remove, when)
    floor: int = -1  # seq of the newest re-registration applied: everything at or below it is covered

    def add(self, socket_id: str, seq: int) -> bool:
        """False when the add is stale (covered by a re-registration, or the socket was already removed)."""
        self._prune()
        if seq <= self.floor or socket_id in self.gone:
            return False
        self.present[socket_id] = max(seq, self.present.get(socket_id, seq))
        return True

    def remove(self, socket_id: str, seq: int) -> bool:
        """False when the remove is stale (a newer re-registration already settled this socket)."""
        self._prune()
        if seq <= self.floor:
            return False
        self.present.pop(socket_id, None)
        self.gone[socket_id] = (seq, time.monotonic())
        return True

    def replace(self, sockets: set[str], seq: int) -> bool:
        """Apply a re-registration taken at ``seq``; False when a newer one was applied already."""
        if seq <= self.floor:
            return False
        kept = {s: q for s, q in self.present.items() if q > seq}  # added after the list was taken
        for socket_id in sockets:
            removed = self.gone.get(socket_id)
            if removed is None or removed[0] <= seq:
                kept.setdefault(socket_id, seq)
        self.present = kept
        self.gone = {s: g for s, g in self.gone.items() if g[0] > seq}
        self.floor = seq
        return True

    def _prune(self) -> None:
        if self.gone:
            horizon = time.monotonic() - TOMBSTONE_S
            self.gone = {s: g for s, g in self.gone.items() if g[1] >= horizon}


@dataclass
class Presence:
    gateways_: dict[str, GatewaySockets] = field(default_factory=dict)
    last_seen: dt.datetime | None = None
    version: int = 0

    @property
    def online(self) -> bool:
        return any(g.present for g in self.gateways_.values())

    def socket_count(self, gateway: str | None = None) -> int:
        if gateway is not None:
            g = self.gateways_.get(gateway)
            return len(g.present) if g is not None else 0
        return sum(len(g.present) for g in self.gateways_.values())

    def gateways(self) -> list[str]:
        return [gw for gw, g in self.gateways_.items() if g.present]

    def sockets(self, gateway: str) -> set[str]:
        g = self.gateways_.get(gateway)
        return set(g.present) if g is not None else set()

    def _gateway(self, gateway: str) -> GatewaySockets:
        g = self.gateways_.get(gateway)
        if g is None:
            g = self.gateways_[gateway] = GatewaySockets()
        return g

    def add(self, gateway: str, socket_id: str, seq: int) -> bool:
        """Register a socket; True when this made the user come online."""
        was_online = self.online
        self._gateway(gateway).add(socket_id, seq)
        return self._transition(was_online)

    def remove(self, gateway: str, socket_id: str, now: dt.datetime, seq: int) -> bool:
        """Forget a socket closed at ``now``; True when presence subscribers must hear of it.

        That is when this made the user go offline, and also when the socket was never known here (this shard
        restarted, or the connect never reached it) and the user has no other socket: subscribers may still
        believe the user online, so the close is confirmed with its time as ``last_seen``."""
        was_online = self.online
        g = self._gateway(gateway)
        known = socket_id in g.present
        if not g.remove(socket_id, seq):
            return False
        if not known:
            return self._confirm_offline(now)
        return self._transition(was_online, now)

    def replace_gateway(
        self, gateway: str, sockets: set[str], now: dt.datetime, seq: int, closed_at: dt.datetime | None = None
    ) -> bool:
        """A gateway's full socket list at ``seq`` (re-registration); True when subscribers must hear of it.
        ``closed_at``: the gateway had sockets of this user that closed then, which this shard may not know."""
        was_online = self.online
        if not self._gateway(gateway).replace(set(sockets), seq):
            return False
        if was_online or self.online:
            return self._transition(was_online, closed_at or now)
        return closed_at is not None and self._confirm_offline(closed_at)

    def forget_gateway(self, gateway: str, now: dt.datetime) -> bool:
        """The gateway stopped heartbeating: drop its sockets (and its sequence, should it come back)."""
        was_online = self.online
        self.gateways_.pop(gateway, None)
        return self._transition(was_online, now)

    def _confirm_offline(self, closed_at: dt.datetime) -> bool:
        if self.online or (self.last_seen is not None and self.last_seen >= closed_at):
            return False
        self.last_seen = closed_at
        self.version = _next_version(self.version)
        return True

    def _transition(self, was_online: bool, now: dt.datetime | None = None) -> bool:
        # A gateway entry without sockets is kept while it still orders late operations (tombstones, floor).
        self.gateways_ = {gw: g for gw, g in self.gateways_.items() if g.present or g.gone or g.floor >= 0}
        if was_online == self.online:
            return False
        if not self.online:
            self.last_seen = now or dt.datetime.now(dt.UTC)
        self.version = _next_version(self.version)
        return True
