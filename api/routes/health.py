"""Liveness and readiness (outside /api/v1): ok or not, no internals (no pids, epochs or counters)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.contract import operation
from api.deps import Ctx
from api.errors import error_response
from api.reads.health import readiness
from api.responses import Encoded, encoded
from domain.errors import Unavailable
from domain.wire.health import Health, Ready, ReadyChecks

router = APIRouter(tags=["health"])

RETRY_AFTER_S = 5
HEALTHY = Health(status="ok")
READY = Ready(status="ready", checks=ReadyChecks(postgres="ok", redis="ok", ray="ok"))


@router.get("/healthz", **operation("getHealth", ok=Health))
async def healthz(request: Request) -> Encoded:
    """The process is up."""
    return encoded(request, HEALTHY)


@router.get("/readyz", **operation("getReadiness", ok=Ready, errors=(503,)))
async def readyz(request: Request, ctx: Ctx) -> Response:
    """PostgreSQL, Redis and the Ray shards are reachable. 503 `unavailable` names which is not, nothing more."""
    checks = await readiness(ctx.services, ctx.users)
    if all(state == "ok" for state in checks.values()):
        return encoded(request, READY)
    err = Unavailable("A dependency is unreachable.", details={"checks": checks})
    err.retry_after = RETRY_AFTER_S  # type: ignore[attr-defined]
    return error_response(request, err)
