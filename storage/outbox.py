"""Outbox rows: inserted in the writer's transaction, marked sent after delivery, relayed when left unsent."""

from __future__ import annotations

import asyncpg


async def insert_events(conn: asyncpg.Connection, rows: list[tuple[int, list[int], str, bytes]]) -> None:
    """Several outbox rows ``(id, recipients, type, data)`` in one statement."""
    await conn.executemany("INSERT INTO outbox (id, recipients, type, data) VALUES ($1, $2, $3, $4)", rows)


async def mark_sent(conn: asyncpg.Connection | asyncpg.Pool, event_ids: list[int]) -> None:
    if event_ids:
        await conn.execute("UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", event_ids)


async def claim_unsent(conn: asyncpg.Connection, older_than_s: float, limit: int) -> list[asyncpg.Record]:
    """Lock a batch of unsent rows (SKIP LOCKED: several relays share the work). Call inside a transaction."""
    return list(
        await conn.fetch(
            """SELECT id, recipients, type, data FROM outbox
               WHERE sent_at IS NULL AND created_at < now() - make_interval(secs => $1)
               ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
            older_than_s,
            limit,
        )
    )


async def record_failure(conn: asyncpg.Connection, event_ids: list[int], error: str) -> None:
    await conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1::bigint[])",
        event_ids,
        error[:500],
    )


async def delete_sent_before(conn: asyncpg.Connection | asyncpg.Pool, days: int) -> str:
    result: str = await conn.execute(
        "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < now() - make_interval(days => $1)", days
    )
    return result
