"""Liveness and readiness (outside /api/v1)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import Ctx

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    """The process is up."""
    return {"status": "ok", "pid": os.getpid()}


@router.get("/readyz", responses={503: {"description": "A dependency is unreachable"}})
async def readyz(ctx: Ctx) -> JSONResponse:
    """PostgreSQL, Redis and the Ray shards are reachable."""

    async def postgres() -> Any:
        return await ctx.services.pool.fetchval("SELECT 1")

    async def redis() -> Any:
        return await ctx.services.redis.ping()

    async def ray_shard() -> Any:
        return await ctx.user_shard_handles[0].ping.remote()

    checks: dict[str, Any] = {}
    ok = True
    for name, probe in (("postgres", postgres), ("redis", redis), ("ray", ray_shard)):
        try:
            result = await asyncio.wait_for(probe(), timeout=3)
            checks[name] = result if name == "ray" else "ok"
        except Exception as exc:
            ok = False
            checks[name] = f"error: {type(exc).__name__}"
    body = {"status": "ready" if ok else "unavailable", "pid": os.getpid(), "checks": checks}
    return JSONResponse(body, status_code=200 if ok else 503)
