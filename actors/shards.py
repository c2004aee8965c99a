"""Ray shells around the plain state classes: named, detached, async shard actors.

A UserShard hosts many logical per-user actors. Entity ops arrive in batches (``call_batch``) from each api
process's ShardClient and run under their entity's lock. Shard-level calls: ``push`` (route stored events to
the gateways holding the recipients' sockets), ``heartbeat``/``register`` (gateways keep their socket lists
in sync; a restarted shard has a new ``epoch`` and gateways re-register), and a background outbox relay.
Errors come back as tuples, not pickled exceptions, so one failing op never fails its batch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
import uuid
from collections import defaultdict
from typing import Any

import msgpack
import ray

from actors import retention
from actors.context import Services
from actors.delivery import Delivery, PushItem
from actors.entities import EntityTable
from actors.errors import DomainError, Internal
from actors.registry import user_shard_name
from actors.topology import retire_stale_shards
from actors.user import UserOps, UserState
from actors.versioning import shard_fingerprint
from storage.config import Settings

log = logging.getLogger("i9lyfe.shard")

Op = tuple[str, int, tuple[Any, ...], dict[str, Any]]
Result = tuple[str, Any]

GATEWAY_TIMEOUT_S = 15.0
RELAY_INTERVAL_S = 2.0
_TRACKED_OPS = {"connect", "disconnect", "sync_gateway", "expire_gateway"}


class UserShardCore:
    """Everything a UserShard does, without the Ray decorator (so it can run in-process in tests)."""

    def __init__(self, index: int, settings: Settings, peers: Any = None) -> None:
        self.index = index
        self.settings = settings
        self.epoch = uuid.uuid4().hex
        self.started = time.time()
        self.calls = 0
        self.batches = 0
        self.table: EntityTable[UserState] = EntityTable(UserState, keep=UserState.holds_anything)
        self.gateway_seen: dict[str, float] = {}
        self.gateway_users: dict[str, set[int]] = defaultdict(set)
        self._peers = peers  # callable shard index -> handle (for delivery from inside a shard)
        self._services: Services | None = None
        self._ops: UserOps | None = None
        self.delivery: Delivery | None = None
        self._init_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    async def ready(self) -> UserOps:
        if self._ops is None:
            async with self._init_lock:
                if self._ops is None:
                    self._services = await Services.create(self.settings, pool_max=4)
                    self.delivery = Delivery(self._services, self._push_to_peer, self.settings.user_shards)
                    self._ops = UserOps(self._services)
                    loop = asyncio.get_running_loop()
                    self._tasks = [
                        loop.create_task(self._maintenance_loop()),
                        loop.create_task(self._relay_loop()),
                        loop.create_task(self._retention_loop()),
                    ]
        return self._ops

    @property
    def services(self) -> Services:
        assert self._services is not None
        return self._services

    async def _push_to_peer(self, shard: int, items: list[PushItem]) -> Any:
        if shard == self.index or self._peers is None:
            return await self.push(items)
        return await self._peers(shard).push.remote(items)

    # ------------------------------------------------------------ entity ops

    async def ping(self) -> dict[str, Any]:
        self.calls += 1
        return {
            "index": self.index,
            "pid": os.getpid(),
            "calls": self.calls,
            "entities": len(self.table),
            "epoch": self.epoch,
            "started": self.started,
            "gateways": len(self.gateway_seen),
        }

    async def call_batch(self, ops: list[Op]) -> list[Result]:
        user_ops = await self.ready()
        self.batches += 1
        return list(await asyncio.gather(*(self._one(user_ops, op) for op in ops)))

    async def _one(self, user_ops: UserOps, op: Op) -> Result:
        name, entity_id, args, kwargs = op
        self.calls += 1
        method = getattr(user_ops, name, None)
        if method is None or name.startswith("_"):
            return ("err", Internal(f"unknown shard op {name!r}").to_wire())
        try:
            value = await self.table.run(entity_id, lambda state: method(state, *args, **kwargs))
        except DomainError as exc:
            return ("err", exc.to_wire())
        except Exception:
            log.exception("shard op failed", extra={"fields": {"op": name, "shard": self.index}})
            return ("err", Internal().to_wire())
        if name in _TRACKED_OPS and args:
            self._track(args[0], entity_id)
        return ("ok", value)

    def _track(self, gateway: str, user_id: int) -> None:
        state = self.table.peek(user_id)
        if state is not None and state.presence.socket_count(gateway):
            self.gateway_users[gateway].add(user_id)
        else:
            self.gateway_users[gateway].discard(user_id)

    # ------------------------------------------------------------ routing

    async def push(self, items: list[PushItem]) -> int:
        """Publish stored events to the gateways of their recipients: one PUBLISH per gateway."""
        await self.ready()
        by_gateway: dict[str, list[PushItem]] = defaultdict(list)
        for item in items:
            state = self.table.peek(item[0])
            if state is None:
                continue
            for gateway in state.presence.gateways():
                by_gateway[gateway].append(item)
        if by_gateway:
            keys = self.services.keys
            async with self.services.redis.pipeline(transaction=False) as pipe:
                for gateway, batch in by_gateway.items():
                    pipe.publish(keys.gateway_channel(gateway), msgpack.packb(batch, use_bin_type=True))
                await pipe.execute()
        return len(by_gateway)

    async def heartbeat(self, gateway: str, sockets: int) -> dict[str, Any]:
        """A gateway says it is alive and how many sockets it holds here; a mismatch asks it to re-register."""
        await self.ready()
        self.gateway_seen[gateway] = time.monotonic()
        known = sum(
            s.presence.socket_count(gateway)
            for uid in self.gateway_users.get(gateway, ())
            if (s := self.table.peek(uid)) is not None
        )
        return {"epoch": self.epoch, "known": known}

    async def register(
        self, gateway: str, sockets: dict[int, list[str]], seq: int, departed: dict[int, float] | None = None
    ) -> dict[str, Any]:
        """Re-registration: these are the sockets ``gateway`` holds in this shard, as of its sequence number
        ``seq`` (operations numbered after it that arrived first are kept; older ones arriving later are
        ignored). ``departed``: users whose sockets there closed (Unix time) while their disconnect may not
        have reached this shard, so that they go offline with a ``last_seen``."""
        user_ops = await self.ready()
        self.gateway_seen[gateway] = time.monotonic()
        departed = departed or {}
        users = set(sockets) | set(self.gateway_users.get(gateway, ())) | set(departed)
        ops: list[Op] = [
            ("sync_gateway", uid, (gateway, sockets.get(uid, []), seq, departed.get(uid)), {}) for uid in users
        ]
        await asyncio.gather(*(self._one(user_ops, op) for op in ops))
        return {"epoch": self.epoch, "users": len(users)}

    async def _expire_gateway(self, gateway: str) -> None:
        user_ops = await self.ready()
        users = list(self.gateway_users.pop(gateway, ()))
        self.gateway_seen.pop(gateway, None)
        await asyncio.gather(*(self._one(user_ops, ("expire_gateway", uid, (gateway,), {})) for uid in users))
        log.warning("gateway expired", extra={"fields": {"gateway": gateway, "users": len(users)}})

    # ------------------------------------------------------------ background work

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(5)
            try:
                now = time.monotonic()
                for gateway, seen in list(self.gateway_seen.items()):
                    if now - seen > GATEWAY_TIMEOUT_S:
                        await self._expire_gateway(gateway)
                self.table.evict_idle()
            except Exception:
                log.exception("shard maintenance failed")

    async def _relay_loop(self) -> None:
        while True:
            await asyncio.sleep(RELAY_INTERVAL_S)
            try:
                assert self.delivery is not None
                await self.delivery.relay_once()
            except Exception:
                log.exception("outbox relay failed")

    async def _retention_loop(self) -> None:
        """Purge sent outbox rows, ended sessions and finished auth flows (one shard at a time, by lock)."""
        while True:
            await asyncio.sleep(retention.PURGE_INTERVAL_S)
            try:
                await retention.purge_once(self.services)
            except Exception:
                log.exception("retention purge failed")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._services is not None:
            await self._services.close()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@ray.remote
class UserShard:
    def __init__(self, index: int, settings: dict[str, Any], peer_names: list[str]) -> None:
        logging.basicConfig(level=settings.get("log_level", "INFO"))
        parsed = Settings.from_dict(settings)
        namespace = parsed.ray_namespace
        cache: dict[int, Any] = {}

        def peer(k: int) -> Any:
            # The creator's names for this version's shards (a fingerprint recomputed here could differ).
            if k not in cache:
                cache[k] = ray.get_actor(peer_names[k], namespace=namespace)
            return cache[k]

        self.core = UserShardCore(index, parsed, peer)

    async def ping(self) -> dict[str, Any]:
        return await self.core.ping()

    async def call_batch(self, ops: list[Op]) -> list[Result]:
        return await self.core.call_batch(ops)

    async def push(self, items: list[PushItem]) -> int:
        return await self.core.push(items)

    async def heartbeat(self, gateway: str, sockets: int) -> dict[str, Any]:
        return await self.core.heartbeat(gateway, sockets)

    async def register(
        self, gateway: str, sockets: dict[int, list[str]], seq: int, departed: dict[int, float] | None = None
    ) -> dict[str, Any]:
        return await self.core.register(gateway, sockets, seq, departed)


def get_or_create_user_shards(settings: Settings, ready_timeout_s: float = 60.0) -> list[Any]:
    """Handles to the K user shards of this version, creating any that do not exist (races between processes
    are fine); once they answer, shards of other versions in the namespace are retired (actors/topology.py)."""
    fingerprint = shard_fingerprint(settings)
    names = [user_shard_name(fingerprint, k) for k in range(settings.user_shards)]
    handles = []
    for k, name in enumerate(names):
        handles.append(
            UserShard.options(  # type: ignore[attr-defined]
                name=name,
                namespace=settings.ray_namespace,
                lifetime="detached",
                get_if_exists=True,
                max_restarts=-1,
                num_cpus=0,
                max_concurrency=1000,
            ).remote(k, settings.to_dict(), names)
        )
    ray.get([handle.ping.remote() for handle in handles], timeout=ready_timeout_s)
    retire_stale_shards(settings.ray_namespace, fingerprint)
    return handles
