"""Liveness and readiness (outside /api/v1): ok or not, no internals (no pids, epochs or counters)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response

from api.deps import Ctx
from api.errors import error_response
from api.responses import Encoded, encoded
from api.schemas.common import error_responses
from api.schemas.health import Health, Ready
from domain.errors import Unavailable

router = APIRouter(tags=["health"])

PROBE_TIMEOUT_S = 3.0
RETRY_AFTER_S = 5


@router.get("/healthz", response_model=Health, responses=error_responses())
async def healthz(request: Request) -> Encoded:
    """The process is up."""
    return encoded(request, {"status": "ok"})


@router.get("/readyz", response_model=Ready, responses=error_responses(503))
async def readyz(request: Request, ctx: Ctx) -> Response:
    """PostgreSQL, Redis and the Ray shards are reachable. 503 `unavailable` names which is not, nothing more."""

    async def postgres() -> Any:
        return await ctx.services.pool.fetchval("SELECT 1")

    async def redis() -> Any:
        return await ctx.services.redis.ping()

    async def ray_shard() -> Any:
        return await ctx.users.ping(0)

    probes: dict[str, Callable[[], Awaitable[Any]]] = {"postgres": postgres, "redis": redis, "ray": ray_shard}
    checks: dict[str, str] = {}
    for name, probe in probes.items():
        try:
            await asyncio.wait_for(probe(), timeout=PROBE_TIMEOUT_S)
            checks[name] = "ok"
        except Exception:
            checks[name] = "unavailable"
    if all(state == "ok" for state in checks.values()):
        return encoded(request, {"status": "ready", "checks": checks})
    err = Unavailable("A dependency is unreachable.", details={"checks": checks})
    err.retry_after = RETRY_AFTER_S  # type: ignore[attr-defined]
    return error_response(request, err)
