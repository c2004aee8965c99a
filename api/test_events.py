"""Test events (APP_ENV=test only): an event source for the realtime tests, before and besides the features that
emit real events. They take the real write path: outbox rows committed, then published by ``Delivery`` to the
recipients' streams and to the gateways on their routes. ``publish=False`` stages the rows only: a
crash between commit and publish, left to the outbox relay. Made only when the test routes are mounted
(api/routes/testing.py); no other deployment has it."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from actors.runtime.delivery import Delivery, OutboxEvent
from actors.runtime.services import Services
from storage import db

TEST_EVENT = "test.event"


UserId = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,19}$")]


class EmitEvents(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of POST /_test/events: ``count`` events to each of ``recipients`` (user ids)."""

    recipients: Annotated[
        list[Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,19}$")]], msgspec.Meta(min_length=1, max_length=1000)
    ]
    count: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    publish: bool = True  # False stages the outbox rows only: a crash between commit and publish
    note: str = ""


class TestEvents:
    __test__ = False  # not a pytest class

    def __init__(self, services: Services) -> None:
        self.services = services
        self.delivery = Delivery(services)

    async def emit(self, recipients: list[int], count: int, note: str, *, publish: bool) -> dict[str, Any]:
        batch = [OutboxEvent.make(recipients, TEST_EVENT, {"n": i, "note": note}) for i in range(count)]
        async with db.transaction(self.services.pool) as conn:
            await self.delivery.stage(conn, batch)
        if not publish:
            return {"outbox_ids": [str(e.id) for e in batch]}
        appended = await self.delivery.publish(batch)
        return {"event_ids": {str(u): [appended[e.id][u] for e in batch] for u in recipients}}
