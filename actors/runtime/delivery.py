"""Delivery of stored events to users, used by every feature that notifies someone.

``publish(events)``: for committed outbox events, one Redis script (storage/routes.py) appends each to its
recipients' streams (idempotent per event) and publishes the entries to the gateways on the recipients' routes, one
PUBLISH per gateway: no Ray hop (DESIGN.md 2b). Concurrent publishers share that script (micro-batched). Then the
outbox rows are marked sent.

Once the streams hold an event it is acknowledged; a gateway that missed a publish (it was resubscribing, or the
route was being rewritten) catches its sockets up from the streams.

``relay_once()`` re-publishes rows left unsent. It leases a batch in one short statement, publishes with no
transaction open (no row lock is held across Redis), then marks each row sent or records its failure: a poison
row backs off and is parked as dead after ``MAX_ATTEMPTS`` (storage/outbox.py), alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from actors.runtime.batching import Coalescer
from actors.runtime.services import Services
from storage import db, ids
from storage import outbox as outbox_store
from storage.jobs import JobQueue
from storage.outage import OUTAGES, dependency_of, describe
from storage.routes import DeliverFailed, DeliverItem, PushItem, Routes
from storage.streams import Appended, Streams

log = logging.getLogger("i9lyfe.delivery")

AppendResult = dict[int, Appended] | Exception  # per event: where it landed, or why its append failed
__all__ = ["Delivery", "OutboxEvent", "PushItem"]
_PACK = msgspec.msgpack.Encoder()
JOB_PREFIX = "job."  # outbox rows of this type are jobs for a worker queue (job.<queue>), not user events


@dataclass(frozen=True)
class OutboxEvent:
    id: int
    recipients: list[int]
    type: str
    data: bytes  # msgpack of the event's data object

    @staticmethod
    def make(recipients: Sequence[int], type_: str, data: Any) -> OutboxEvent:
        """``data``: the event's wire struct (domain/wire, domain/events.py) or plain data, stored as MessagePack."""
        return OutboxEvent(ids.new_id(), sorted(set(recipients)), type_, _PACK.encode(data))


class Delivery:
    """Every hop is micro-batched (actors/runtime/batching.py): concurrent publishers share one delivery script,
    live pushes share one script, and outbox rows are marked sent together."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.streams = Streams(services.redis, services.keys)
        self.routes = Routes(services.redis, services.keys)
        self._tasks: set[asyncio.Task[None]] = set()
        self._delivers: Coalescer[DeliverItem, AppendResult] = Coalescer(self._deliver_batch, max_batch=256)
        self._pushes: Coalescer[PushItem, None] = Coalescer(self._push_batch, max_batch=512)
        self._marks: Coalescer[int, None] = Coalescer(self._mark_batch, max_batch=512)
        self._stages: Coalescer[OutboxEvent, None] = Coalescer(self._stage_batch, max_batch=512)
        self._queues: dict[str, JobQueue] = {}

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

    async def publish(
        self, events: Sequence[OutboxEvent], *, mark: bool = True, mark_later: bool = False
    ) -> dict[int, dict[int, str]]:
        """Streams and live push in one script (the streams are the acknowledgement point), then mark the outbox
        rows sent. Returns, per outbox event, recipient -> event id. When an event cannot be appended, the others
        are still delivered and marked, then its error is raised (its row stays unsent for the relay).

        ``mark_later``: return once the events are delivered, and mark the rows in the background (a single
        writer that must deliver in order, such as a chat, need not hold its lock for the mark).

        Outbox rows of type ``job.<queue>`` are enqueued on that worker queue instead (storage/jobs.py), then
        marked sent: a worker expands them (the feed fan-out, actors/fanout.py)."""
        jobs = [e for e in events if e.type.startswith(JOB_PREFIX)]
        if jobs:
            await self._enqueue(jobs, mark)
            events = [e for e in events if not e.type.startswith(JOB_PREFIX)]
            if not events:
                return {e.id: {} for e in jobs}
        results = await asyncio.gather(
            *(self._delivers.submit(0, (e.id, e.recipients, e.type, e.data)) for e in events)
        )
        landed = [(e, r) for e, r in zip(events, results, strict=True) if not isinstance(r, Exception)]
        if mark and landed:
            if mark_later:
                task = asyncio.get_running_loop().create_task(self._mark([e.id for e, _ in landed]))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                await asyncio.gather(*(self._marks.submit(0, e.id) for e, _ in landed))
        for result in results:
            if isinstance(result, Exception):
                raise result
        return {e.id: {u: at.id for u, at in where.items()} for e, where in landed}

    async def push(self, items: Sequence[PushItem]) -> None:
        """Entries already in the streams (or live-only ones, without an id) to the gateways on their users'
        routes. Best effort: a failure is logged once per outage; gateways catch up from the streams."""
        try:
            await asyncio.gather(*(self._pushes.submit(0, item) for item in items))
        except Exception as exc:
            OUTAGES.note("live push failed (gateways catch up from the streams)", exc, log)

    async def _mark(self, outbox_ids: list[int]) -> None:
        try:
            await asyncio.gather(*(self._marks.submit(0, i) for i in outbox_ids))
        except Exception as exc:  # nobody waits: the relay re-publishes them (at-least-once; clients de-duplicate)
            OUTAGES.note("outbox rows not marked sent (the relay re-publishes them)", exc, log)

    async def _enqueue(self, jobs: list[OutboxEvent], mark: bool) -> None:
        by_queue: dict[str, list[OutboxEvent]] = {}
        for job in jobs:
            by_queue.setdefault(job.type.removeprefix(JOB_PREFIX), []).append(job)
        for name, batch in by_queue.items():
            queue = self._queues.get(name)
            if queue is None:
                queue = self._queues[name] = JobQueue(self.services.redis, self.services.keys, name)
            await queue.push([(job.type, job.data) for job in batch])
        if mark:
            await asyncio.gather(*(self._marks.submit(0, job.id) for job in jobs))

    async def _deliver_batch(self, _key: int, items: list[DeliverItem]) -> list[AppendResult]:
        results = await self.routes.deliver(items)
        return [DeliveryError(r.reason) if isinstance(r, DeliverFailed) else r for r in results]

    async def _push_batch(self, _key: int, items: list[PushItem]) -> list[None]:
        await self.routes.push(items)
        return [None] * len(items)

    async def _mark_batch(self, _key: int, outbox_ids: list[int]) -> list[None]:
        await outbox_store.mark_sent(self.services.pool, outbox_ids)
        return [None] * len(outbox_ids)

    async def relay_once(
        self,
        older_than_s: float = outbox_store.RELAY_AFTER_S,
        limit: int = 200,
        *,
        max_attempts: int = outbox_store.MAX_ATTEMPTS,
        lease_s: float = outbox_store.LEASE_S,
    ) -> int:
        """Re-deliver outbox rows left unsent (crash between commit and publish, or a failed attempt whose
        backoff ran out). Safe to run anywhere, concurrently. Returns the number of rows marked sent."""
        pool = self.services.pool
        claimed = await outbox_store.claim_due(
            pool, older_than_s=older_than_s, limit=limit, lease_s=lease_s, max_attempts=max_attempts
        )
        if not claimed:
            return 0
        for row in claimed:
            if row["dead_at"] is not None:
                _log_dead(row)
        events = [
            OutboxEvent(int(r["id"]), [int(u) for u in r["recipients"]], r["type"], bytes(r["data"]))
            for r in claimed
            if r["dead_at"] is None
        ]
        deadline = asyncio.get_running_loop().time() + lease_s / 2  # done (or given up) well inside the lease
        outcomes = await asyncio.gather(*(self._publish_by(deadline, e) for e in events))
        sent = [e.id for e, error in zip(events, outcomes, strict=True) if error is None]
        attempts = {int(r["id"]): int(r["attempts"]) for r in claimed}
        # Failed only because Redis or PostgreSQL was down: the attempt is given back (not a publish that hung).
        outage = frozenset(
            e.id
            for e, error in zip(events, outcomes, strict=True)
            if error is not None and dependency_of(error) in ("redis", "postgresql")
        )
        failed = [
            (
                e.id,
                describe(error),
                outbox_store.OUTAGE_WAIT_S if e.id in outage else outbox_store.backoff_s(attempts[e.id]),
            )
            for e, error in zip(events, outcomes, strict=True)
            if error is not None
        ]
        await outbox_store.mark_sent(pool, sent)
        retrying = []
        for row in await outbox_store.record_failures(pool, failed, max_attempts, refund=outage):
            if row["dead_at"] is not None:
                _log_dead(row)
            else:
                retrying.append(row)
        if retrying and not any(OUTAGES.down(d) for d in ("postgresql", "redis", "ray")):  # else counted there
            log.warning(
                "outbox rows failed; will retry", extra={"fields": {**_row_fields(retrying[0]), "rows": len(retrying)}}
            )
        if sent:
            log.info("outbox relayed", extra={"fields": {"events": len(sent), "failed": len(failed)}})
        return len(sent)

    async def _publish_by(self, deadline: float, event: OutboxEvent) -> Exception | None:
        """Publish one event (appends and pushes of concurrent calls still share batches); its error or None."""
        try:
            async with asyncio.timeout_at(deadline):
                await self.publish([event], mark=False)
        except Exception as exc:
            return exc
        return None


class DeliveryError(RuntimeError):
    """An event that could not be appended (its row stays unsent: the relay retries it, then parks it)."""


def _row_fields(row: Any) -> dict[str, Any]:
    return {
        "outbox_id": int(row["id"]),
        "type": row["type"],
        "attempts": int(row["attempts"]),
        "error": row["last_error"],
    }


def _log_dead(row: Any) -> None:
    log.error("outbox row parked as dead; it will not be delivered", extra={"fields": _row_fields(row)})
