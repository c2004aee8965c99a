"""Delivery of stored events to users, used by every feature that notifies someone.

``publish(events)``: for committed outbox events, append to each recipient's stream (idempotent per event),
then hand the entries to the recipients' UserShards, one call per shard, which publish them to the gateways
holding the recipients' sockets, one PUBLISH per gateway. Then the outbox rows are marked sent.

Once the streams hold an event it is acknowledged: a failed shard push is retried in the background, and a
gateway that sees its shard restart replays its sockets from their streams, so the event still arrives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from actors.batching import Coalescer
from actors.context import Services
from actors.registry import shard_index
from storage import db, ids
from storage import outbox as outbox_store
from storage.streams import Appended, Streams

log = logging.getLogger("i9lyfe.delivery")

PushItem = tuple[int, str, str, bytes, str]  # (user id, event id, type, msgpack data, previous event id)
PushFn = Callable[[int, list[PushItem]], Awaitable[Any]]
AppendItem = tuple[int, list[int], str, bytes]


@dataclass(frozen=True)
class OutboxEvent:
    id: int
    recipients: list[int]
    type: str
    data: bytes  # msgpack of the event's data object

    @staticmethod
    def make(recipients: Sequence[int], type_: str, data: dict[str, Any]) -> OutboxEvent:
        return OutboxEvent(ids.new_id(), sorted(set(recipients)), type_, msgpack.packb(data, use_bin_type=True))


class Delivery:
    """Every hop is micro-batched (actors/batching.py): stream appends from concurrent writers share one Redis
    pipeline, pushes to a shard share one Ray call, and outbox rows are marked sent together."""

    def __init__(self, services: Services, push: PushFn, shards: int, push_retries: int = 4) -> None:
        self.services = services
        self.streams = Streams(services.redis, services.keys)
        self._push = push
        self.shards = shards
        self.push_retries = push_retries
        self._tasks: set[asyncio.Task[None]] = set()
        self._appends: Coalescer[AppendItem, dict[int, Appended]] = Coalescer(self._append_batch, max_batch=256)
        self._pushes: Coalescer[PushItem, None] = Coalescer(self._push_batch, max_batch=512)
        self._marks: Coalescer[int, None] = Coalescer(self._mark_batch, max_batch=512)
        self._stages: Coalescer[OutboxEvent, None] = Coalescer(self._stage_batch, max_batch=512)

    async def stage(self, conn: Any, events: Sequence[OutboxEvent]) -> None:
        """Insert outbox rows inside the caller's transaction (commit first, then ``publish``)."""
        await outbox_store.insert_events(conn, [(e.id, e.recipients, e.type, e.data) for e in events])

    async def deliver(self, events: Sequence[OutboxEvent]) -> dict[int, dict[int, str]]:
        """Commit outbox rows, then publish: for writers with nothing else to commit. Concurrent callers share
        one transaction (group commit); each returns once its rows are durable and published."""
        await asyncio.gather(*(self._stages.submit(0, e) for e in events))
        return await self.publish(events)

    async def _stage_batch(self, _key: int, events: list[OutboxEvent]) -> list[None]:
        async with db.transaction(self.services.pool) as conn:
            await outbox_store.insert_events(conn, [(e.id, e.recipients, e.type, e.data) for e in events])
        return [None] * len(events)

    async def publish(self, events: Sequence[OutboxEvent], *, mark: bool = True) -> dict[int, dict[int, str]]:
        """Streams first (the acknowledgement point), then live push, then mark the outbox rows sent.
        Returns, per outbox event, recipient -> event id."""
        appended = await asyncio.gather(
            *(self._appends.submit(0, (e.id, e.recipients, e.type, e.data)) for e in events)
        )
        pushes = [
            self._push_with_retry(shard_index(user_id, self.shards), (user_id, at.id, event.type, event.data, at.prev))
            for event, landed in zip(events, appended, strict=True)
            for user_id, at in landed.items()
        ]
        await asyncio.gather(*pushes)
        if mark:
            await asyncio.gather(*(self._marks.submit(0, e.id) for e in events))
        return {e.id: {u: at.id for u, at in landed.items()} for e, landed in zip(events, appended, strict=True)}

    async def _append_batch(self, _key: int, items: list[AppendItem]) -> list[dict[int, Appended]]:
        return await self.streams.append(items)

    async def _push_batch(self, shard: int, items: list[PushItem]) -> list[None]:
        await self._push(shard, items)
        return [None] * len(items)

    async def _mark_batch(self, _key: int, outbox_ids: list[int]) -> list[None]:
        await outbox_store.mark_sent(self.services.pool, outbox_ids)
        return [None] * len(outbox_ids)

    async def _push_with_retry(self, shard: int, item: PushItem) -> None:
        try:
            await self._pushes.submit(shard, item)
        except Exception as exc:
            log.warning(
                "live push failed; retrying in background", extra={"fields": {"shard": shard, "error": repr(exc)}}
            )
            task = asyncio.get_running_loop().create_task(self._retry(shard, item))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _retry(self, shard: int, item: PushItem) -> None:
        delay = 0.25
        for _ in range(self.push_retries):
            await asyncio.sleep(delay)
            try:
                await self._pushes.submit(shard, item)  # retries coalesce too
                return
            except Exception:
                delay *= 2
        log.error("live push gave up; gateways will catch up from streams", extra={"fields": {"shard": shard}})

    async def relay_once(self, older_than_s: float = 5.0, limit: int = 200) -> int:
        """Re-deliver outbox rows left unsent (crash between commit and publish). Safe to run anywhere."""
        async with db.transaction(self.services.pool) as conn:
            rows = await outbox_store.claim_unsent(conn, older_than_s, limit)
            if not rows:
                return 0
            events = [
                OutboxEvent(int(r["id"]), [int(u) for u in r["recipients"]], r["type"], bytes(r["data"])) for r in rows
            ]
            try:
                await self.publish(events, mark=False)
            except Exception as exc:
                await outbox_store.record_failure(conn, [e.id for e in events], repr(exc))
                log.warning("outbox relay failed; will retry", extra={"fields": {"error": repr(exc)}})
                return 0
            await outbox_store.mark_sent(conn, [e.id for e in events])
        log.info("outbox relayed", extra={"fields": {"events": len(events)}})
        return len(events)
