"""Test-only routes, mounted only when APP_ENV=test (they do not exist in any other deployment).

They give the realtime tests an event source before the features that emit real events exist, and a way to
find the shard processes to kill. Events go through the real write path: outbox row committed, then delivery.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from actors.delivery import OutboxEvent
from actors.topology import describe_shards
from api.deps import Ctx
from api.schemas.common import Strict
from storage import db

router = APIRouter(prefix="/_test", tags=["test-only"], include_in_schema=False)

TEST_EVENT = "test.event"


class EventsBody(Strict):
    recipients: list[str] = Field(min_length=1, max_length=1000)
    count: int = Field(default=1, ge=1, le=1000)
    publish: bool = True  # False stages the outbox rows only: a crash between commit and publish
    note: str = ""


@router.post("/events")
async def emit(body: EventsBody, ctx: Ctx) -> dict[str, Any]:
    recipients = [int(r) for r in body.recipients]
    batch = [OutboxEvent.make(recipients, TEST_EVENT, {"n": i, "note": body.note}) for i in range(body.count)]
    delivery = ctx.extras["delivery"]
    async with db.transaction(ctx.services.pool) as conn:
        await delivery.stage(conn, batch)
    if not body.publish:
        return {"outbox_ids": [str(e.id) for e in batch]}
    appended = await delivery.publish(batch)
    return {"event_ids": {str(u): [appended[e.id][u] for e in batch] for u in recipients}}


@router.get("/shards")
async def shards(ctx: Ctx) -> list[dict[str, Any]]:
    return [await handle.ping.remote() for handle in ctx.user_shard_handles]


@router.get("/shard_names")
async def shard_names(ctx: Ctx) -> dict[str, Any]:
    """This process's shard fingerprint and shard names, and every named actor of its Ray namespace."""
    return describe_shards(ctx.services.settings)
