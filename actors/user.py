"""The logical per-user actor: its state (presence) and the ops that only it can answer: where the user's sockets
are (connect, disconnect, a gateway's re-registration or expiry), their presence, closing the sockets of revoked
sessions. Hosted in a UserShard with the user's other ops (actors/posts.py, engagement.py, follows.py, profile.py,
recommendations.py), which run under the same entity lock.

Plain Python (no Ray import). Presence transitions are persisted (``last_seen``) in the op and published to the
user's presence subscribers after it (actors/after_commit.py ``Publish``).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import msgpack

from actors.after_commit import Effect, Publish, Route
from actors.runtime import shard_counters
from actors.runtime.host import Done
from actors.runtime.services import Services
from domain.errors import NotFound, RateLimited
from domain.ops import CloseSessions, Connect, Disconnect, ExpireGateway, GetPresence, SyncGateway, Touch
from domain.presence import Presence
from domain.present import rfc3339
from storage import users as user_store

log = logging.getLogger("i9lyfe.user")

SOCKET_RETRY_AFTER_S = 10  # Retry-After of a socket refused for the per-user cap: until one of them closes


@dataclass
class UserState:
    user_id: int
    username: str | None = None
    loaded: bool = False
    presence: Presence = field(default_factory=Presence)

    def holds_anything(self) -> bool:
        """An entity with open sockets is never evicted: it is the only record of where they are."""
        return self.presence.online


def _at(unix_seconds: float | None) -> dt.datetime:
    if unix_seconds is None:
        return dt.datetime.now(dt.UTC)
    return dt.datetime.fromtimestamp(unix_seconds, dt.UTC)


def presence_view(state: UserState) -> dict[str, Any]:
    last_seen = state.presence.last_seen
    return {
        "username": state.username,
        "online": state.presence.online,
        "last_seen": None if state.presence.online or last_seen is None else rfc3339(last_seen),
        "version": state.presence.version,
    }


class PresenceOps:
    """Sockets and presence of one user."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def load(self, state: UserState) -> None:
        """Lazy activation from storage: the username and the persisted last_seen."""
        if state.loaded:
            return
        row = await user_store.find_presence_row(self.services.pool, state.user_id)
        if row is None:
            raise NotFound("No such user.")
        state.username = row["username"]
        if state.presence.last_seen is None:
            state.presence.last_seen = row["last_seen"]
        state.loaded = True

    async def _transition(self, state: UserState) -> list[Effect]:
        """A presence transition: ``last_seen`` persisted on going offline, then (after the op) published to the
        user's presence subscribers."""
        went = shard_counters.PRESENCE_ONLINE if state.presence.online else shard_counters.PRESENCE_OFFLINE
        shard_counters.count(went)  # reported through ping for GET /metrics
        if not state.presence.online and state.presence.last_seen is not None:
            await user_store.update_last_seen(self.services.pool, state.user_id, state.presence.last_seen)
        message = msgpack.packb({"type": "presence", "data": presence_view(state)}, use_bin_type=True)
        return [Publish(self.services.keys.presence_channel(state.user_id), message)]

    async def _changed(
        self, state: UserState, before: list[str], transition: bool, *, always: bool = False
    ) -> list[Effect]:
        """The effects of a socket change: the route mirror when the set of gateways changed (or ``always``: a
        gateway's re-registration rewrites it, in case Redis lost it), then the presence transition, if any."""
        after = state.presence.gateways()
        effects: list[Effect] = []
        if always or sorted(before) != sorted(after):
            effects.append(Route(state.user_id, tuple(sorted(after))))
        if transition:
            effects += await self._transition(state)
        return effects

    async def connect(self, state: UserState, op: Connect) -> Done[dict[str, Any]]:
        """Register a socket; refused (429 ``too_many_sockets``) when the user already has the configured number
        open, across every gateway: this shard is the one place that sees all of them."""
        await self.load(state)
        limit = self.services.settings.ws_max_sockets_per_user
        if state.presence.socket_count() >= limit and op.socket_id not in state.presence.sockets(op.gateway):
            raise RateLimited(
                SOCKET_RETRY_AFTER_S,
                f"At most {limit} sockets may be open per user; close one first.",
                code="too_many_sockets",
                details={"limit": limit},
            )
        before = state.presence.gateways()
        went = state.presence.add(op.gateway, op.socket_id, op.seq)
        return Done(presence_view(state), effects=await self._changed(state, before, went))

    async def disconnect(self, state: UserState, op: Disconnect) -> Done[dict[str, Any]]:
        await self.load(state)
        before = state.presence.gateways()
        gone = state.presence.remove(op.gateway, op.socket_id, _at(op.closed_at), op.seq)
        return Done(presence_view(state), effects=await self._changed(state, before, gone))

    async def sync_gateway(self, state: UserState, op: SyncGateway) -> Done[bool]:
        await self.load(state)
        closed = None if op.closed_at is None else _at(op.closed_at)
        before = state.presence.gateways()
        changed = state.presence.replace_gateway(op.gateway, set(op.sockets), dt.datetime.now(dt.UTC), op.seq, closed)
        return Done(changed, effects=await self._changed(state, before, changed, always=True))

    async def expire_gateway(self, state: UserState, op: ExpireGateway) -> Done[bool]:
        await self.load(state)
        before = state.presence.gateways()
        changed = state.presence.forget_gateway(op.gateway, dt.datetime.now(dt.UTC))
        return Done(changed, effects=await self._changed(state, before, changed))

    async def presence(self, state: UserState, op: GetPresence) -> Done[dict[str, Any]]:
        await self.load(state)
        return Done(presence_view(state))

    async def close_sessions(self, state: UserState, op: CloseSessions) -> Done[int]:
        """Tell the gateways holding this user's sockets to close those of the revoked sessions (4401). The
        revocation itself happened before, in storage and the Redis denylist (api/accounts.py), so a shard that
        cannot be reached never keeps a session alive."""
        gateways = state.presence.gateways()
        if not gateways or not op.session_ids:
            return Done(0)
        message = msgpack.packb(
            {"control": "revoke", "user": state.user_id, "sessions": op.session_ids}, use_bin_type=True
        )
        keys = self.services.keys
        return Done(len(gateways), effects=[Publish(keys.gateway_channel(g), message) for g in gateways])

    async def touch(self, state: UserState, op: Touch) -> Done[str]:
        """Proves the entity is reachable and serialized (tests and benchmarks)."""
        return Done(dt.datetime.now(dt.UTC).isoformat())
