"""Readiness: whether PostgreSQL, Redis and the Ray shards answer, each within ``PROBE_TIMEOUT_S`` (ok or not,
nothing more: no internals)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from storage import db

PROBE_TIMEOUT_S = 3.0


async def readiness(services: Any, users: Any) -> dict[str, str]:
    """``"ok"`` or ``"unavailable"`` for each of ``postgres``, ``redis`` and ``ray`` (a user shard's ping)."""

    async def postgres() -> None:
        async with db.transaction(services.pool):  # a round trip: a transaction begun and committed
            pass

    async def redis() -> Any:
        return await services.redis.ping()

    async def ray_shard() -> Any:
        return await users.ping(0)

    probes: dict[str, Callable[[], Awaitable[Any]]] = {"postgres": postgres, "redis": redis, "ray": ray_shard}
    checks: dict[str, str] = {}
    for name, probe in probes.items():
        try:
            await asyncio.wait_for(probe(), timeout=PROBE_TIMEOUT_S)
            checks[name] = "ok"
        except Exception:
            checks[name] = "unavailable"
    return checks
