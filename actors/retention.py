"""Retention: delete what nothing needs any more, so that no table grows for ever.

Call ``purge_once(services)`` every ``PURGE_INTERVAL_S`` from every shard: a Postgres advisory lock lets one
caller work at a time (the others return at once), and each delete is a bounded batch (``BATCH`` rows, SKIP
LOCKED) in a statement of its own, so a large backlog never holds locks for long. A run stops after
``MAX_BATCHES`` batches of a kind; the rest goes next time.

What is kept, and for how long:

* outbox rows, once sent: 1 day (no retry needs them; the streams hold the events). Parked as dead: 14 days,
  to be inspected. Rows still due for delivery are never deleted.
* auth flows: 1 day after they expired, were consumed or burned (a flow is usable for 15 minutes).
* sessions that expired or were revoked: 30 days (their refresh tokens go with them).
* refresh tokens of an ended session: 1 day (presenting one gets ``invalid_refresh_token``, where before it
  got ``session_revoked``: either way, log in again).
* Idempotency-Key records: 1 day (a retry within 24 h gets the original answer).
* media uploads never completed: 1 day (an upload URL works for an hour), with their uploaded object. Media that
  was completed stays: it is its owner's, attached or not.
* used (rotated) refresh tokens: 7 days, the reuse-detection window. A used token presented within 7 days of
  its rotation revokes its session (someone else holds the chain); after that it is merely unknown. So a
  device that stayed offline for over a week while a thief kept refreshing its stolen token gets logged out
  without the thief's session being revoked. The cost of the window is one row per refresh per session.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import asyncpg

from actors.runtime.services import Services
from storage import auth as auth_store
from storage import locks
from storage import outbox as outbox_store
from storage import posts as post_store
from storage.media import incoming_key
from storage.media import store as media_store

log = logging.getLogger("i9lyfe.retention")

PURGE_INTERVAL_S = 300.0
BATCH = 5_000
MAX_BATCHES = 20

DAY_S = 24 * 3600.0
SENT_OUTBOX_KEEP_S = 1 * DAY_S
DEAD_OUTBOX_KEEP_S = 14 * DAY_S
FINISHED_FLOW_KEEP_S = 1 * DAY_S
ENDED_SESSION_KEEP_S = 30 * DAY_S
ENDED_SESSION_TOKEN_KEEP_S = 1 * DAY_S
REFRESH_REUSE_WINDOW_S = 7 * DAY_S
ABANDONED_UPLOAD_KEEP_S = 1 * DAY_S
IDEMPOTENCY_KEEP_S = 1 * DAY_S

Purge = Callable[[asyncpg.Connection, float, int], Awaitable[int]]

# In this order: sessions before their tokens, so that the cascade takes the tokens of deleted sessions.
PURGES: tuple[tuple[str, Purge, float], ...] = (
    ("outbox_sent", outbox_store.delete_sent, SENT_OUTBOX_KEEP_S),
    ("outbox_dead", outbox_store.delete_dead, DEAD_OUTBOX_KEEP_S),
    ("auth_flows", auth_store.delete_finished_flows, FINISHED_FLOW_KEEP_S),
    ("sessions", auth_store.delete_ended_sessions, ENDED_SESSION_KEEP_S),
    ("refresh_tokens_used", auth_store.delete_used_refresh_tokens, REFRESH_REUSE_WINDOW_S),
    ("refresh_tokens_ended", auth_store.delete_refresh_tokens_of_ended_sessions, ENDED_SESSION_TOKEN_KEEP_S),
    ("idempotency_keys", post_store.delete_old_idempotency_keys, IDEMPOTENCY_KEEP_S),
)


async def purge_once(services: Services, *, batch: int = BATCH, max_batches: int = MAX_BATCHES) -> dict[str, int]:
    """One retention pass: rows deleted per kind, or ``{}`` when another process is running one."""
    counts: dict[str, int] = {}
    async with services.pool.acquire() as conn:
        if not await locks.try_lock(conn, locks.RETENTION_LOCK_KEY):
            return counts
        try:
            for name, delete, keep_s in PURGES:
                counts[name] = 0
                for _ in range(max_batches):
                    deleted = await delete(conn, keep_s, batch)
                    counts[name] += deleted
                    if deleted < batch:
                        break
            counts["media_abandoned"] = await _sweep_abandoned_uploads(services, conn, batch, max_batches)
        finally:
            await locks.unlock(conn, locks.RETENTION_LOCK_KEY)
    if any(counts.values()):
        log.info("retention purged old rows", extra={"fields": counts})
    return counts


async def _sweep_abandoned_uploads(services: Services, conn: asyncpg.Connection, batch: int, max_batches: int) -> int:
    """Delete uploads left pending for ABANDONED_UPLOAD_KEEP_S: their uploaded objects first, then their rows
    (a failed object delete keeps the row, so the next pass tries again; nothing is orphaned)."""
    backend = services.media_backend
    swept = 0
    for _ in range(max_batches):
        found = await media_store.list_abandoned(conn, ABANDONED_UPLOAD_KEEP_S, batch)
        for media_id in found:
            await backend.delete(incoming_key(media_id))
        swept += await media_store.delete_pending(conn, found)
        if len(found) < batch:
            break
    return swept
