"""Ray shells around the plain state classes: named, detached, async shard actors.

A shard hosts many logical actors (one per user). Calls arrive in batches (``call_batch``) from each api
process's ``ShardClient``; each op runs under its entity's lock. Errors come back as tuples, not pickled
exceptions, so one failing op never fails its batch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import ray

from actors.context import Services
from actors.entities import EntityTable
from actors.errors import DomainError, Internal
from actors.registry import user_shard_name
from actors.user import UserOps, UserState
from storage.config import Settings

log = logging.getLogger("i9lyfe.shard")

Op = tuple[str, int, tuple[Any, ...], dict[str, Any]]
Result = tuple[str, Any]


class UserShardCore:
    """Everything a UserShard does, without Ray (so it can run in-process in unit tests)."""

    def __init__(self, index: int, settings: Settings) -> None:
        self.index = index
        self.settings = settings
        self.started = time.time()
        self.calls = 0
        self.batches = 0
        self.table: EntityTable[UserState] = EntityTable(UserState, keep=UserState.holds_anything)
        self._services: Services | None = None
        self._ops: UserOps | None = None
        self._init_lock = asyncio.Lock()
        self._evictor: asyncio.Task[None] | None = None

    async def ready(self) -> UserOps:
        if self._ops is None:
            async with self._init_lock:
                if self._ops is None:
                    self._services = await Services.create(self.settings, pool_max=4)
                    self._ops = UserOps(self._services)
                    self._evictor = asyncio.create_task(self._evict_loop())
        return self._ops

    async def _evict_loop(self) -> None:
        while True:
            await asyncio.sleep(60)
            self.table.evict_idle()

    async def ping(self) -> dict[str, Any]:
        self.calls += 1
        return {
            "index": self.index,
            "pid": os.getpid(),
            "calls": self.calls,
            "entities": len(self.table),
            "started": self.started,
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
        return ("ok", value)

    async def close(self) -> None:
        if self._evictor is not None:
            self._evictor.cancel()
        if self._services is not None:
            await self._services.close()


@ray.remote
class UserShard:
    def __init__(self, index: int, settings: dict[str, Any]) -> None:
        logging.basicConfig(level=settings.get("log_level", "INFO"))
        self.core = UserShardCore(index, Settings.from_dict(settings))

    async def ping(self) -> dict[str, Any]:
        return await self.core.ping()

    async def call_batch(self, ops: list[Op]) -> list[Result]:
        return await self.core.call_batch(ops)

    def pid(self) -> int:
        return os.getpid()


def get_or_create_user_shards(settings: Settings) -> list[Any]:
    """Handles to the K user shards, creating any that do not exist (races between processes are fine)."""
    handles = []
    for k in range(settings.user_shards):
        handles.append(
            UserShard.options(  # type: ignore[attr-defined]
                name=user_shard_name(k),
                namespace=settings.ray_namespace,
                lifetime="detached",
                get_if_exists=True,
                max_restarts=-1,
                num_cpus=0,
                max_concurrency=1000,
            ).remote(k, settings.to_dict())
        )
    return handles
