"""Outbox rows: inserted in the writer's transaction, marked sent after delivery, relayed when left unsent.

A relay claims due rows with a lease (one short statement: ``next_attempt_at`` moves ``LEASE_S`` ahead and
``attempts`` counts the attempt), publishes them outside any transaction, then marks them sent or records the
failure with a backoff. After ``MAX_ATTEMPTS`` attempts, or once a row is older than ``RETRY_WINDOW_S``, it is
parked as dead (``dead_at``) and never published again. The retry schedule lives here so that the stream
de-duplication (storage/streams.py) can be sized to outlast it.
"""

from __future__ import annotations

import random

import asyncpg

RELAY_AFTER_S = 5.0  # rows younger than this are still being published by their writer
LEASE_S = 60.0  # a claimed row is left alone by other relays this long; a publish gets half of it
BACKOFF_BASE_S = 2.0  # wait after the first failed attempt, doubled after each further one ...
BACKOFF_CAP_S = 600.0  # ... up to this
MAX_ATTEMPTS = 16  # then the row is parked as dead (about 80 min of retries); attempts that failed only because
# a dependency was down are given back (record_failures ``refund``): an outage does not use a row up
OUTAGE_WAIT_S = 30.0  # the wait after an attempt a dependency's outage failed


def backoff_s(attempts: int, jitter: float | None = None) -> float:
    """Wait before the next attempt, after ``attempts`` failed ones: exponential, capped, with jitter (the wait
    is scaled into [1/2, 1] of the exponential value; ``jitter`` in [0, 1] picks the point, random when None)."""
    full = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** max(0, attempts - 1))
    return full * (0.5 + 0.5 * (random.random() if jitter is None else jitter))


# The longest a row can keep being retried while relays run: every wait of the schedule plus a full lease per
# attempt (a publish that hangs until its lease runs out), plus the writer's head start.
MAX_RETRY_SPAN_S = (
    RELAY_AFTER_S + sum(backoff_s(n, jitter=1.0) for n in range(1, MAX_ATTEMPTS)) + MAX_ATTEMPTS * LEASE_S
)
# Whatever the schedule says (relays may all be down for a while), no row is published once it is older than
# this: the stream de-duplication must outlive RETRY_WINDOW_S + LEASE_S (storage/streams.py DEDUPE_TTL_S).
RETRY_WINDOW_S = max(MAX_RETRY_SPAN_S, 23 * 3600.0)


async def insert_events(conn: asyncpg.Connection, rows: list[tuple[int, list[int], str, bytes]]) -> None:
    """Several outbox rows ``(id, recipients, type, data)`` in one statement."""
    await conn.executemany("INSERT INTO outbox (id, recipients, type, data) VALUES ($1, $2, $3, $4)", rows)


async def mark_sent(conn: asyncpg.Connection | asyncpg.Pool, event_ids: list[int]) -> None:
    if event_ids:
        await conn.execute("UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", event_ids)


async def claim_due(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    older_than_s: float,
    limit: int,
    lease_s: float,
    max_attempts: int,
    window_s: float = RETRY_WINDOW_S,
) -> list[asyncpg.Record]:
    """Lease up to ``limit`` due rows (SKIP LOCKED: several relays share the work; the locks last this one
    statement). Each row counts an attempt and is hidden from other relays for ``lease_s``. Rows whose attempts
    are used up (the last one never recorded a result) or older than ``window_s`` are parked as dead instead:
    they come back with ``dead_at`` set and must not be published."""
    return list(
        await conn.fetch(
            """WITH due AS (
                   SELECT id, CASE WHEN attempts >= $4 THEN 'attempts used up'
                                   WHEN created_at < now() - make_interval(secs => $5) THEN 'retry window passed'
                              END AS park
                   FROM outbox
                   WHERE sent_at IS NULL AND dead_at IS NULL AND next_attempt_at <= now()
                     AND created_at < now() - make_interval(secs => $1)
                   ORDER BY next_attempt_at
                   LIMIT $2
                   FOR UPDATE SKIP LOCKED)
               UPDATE outbox o
               SET attempts = o.attempts + CASE WHEN due.park IS NULL THEN 1 ELSE 0 END,
                   next_attempt_at = now() + make_interval(secs => $3),
                   dead_at = CASE WHEN due.park IS NOT NULL THEN now() END,
                   last_error = concat_ws('; ', o.last_error, due.park)
               FROM due WHERE o.id = due.id
               RETURNING o.id, o.recipients, o.type, o.data, o.attempts, o.last_error, o.dead_at""",
            older_than_s,
            limit,
            lease_s,
            max_attempts,
            window_s,
        )
    )


async def record_failures(
    conn: asyncpg.Connection | asyncpg.Pool,
    failures: list[tuple[int, str, float]],
    max_attempts: int,
    refund: frozenset[int] = frozenset(),
) -> list[asyncpg.Record]:
    """For rows ``(id, error, backoff seconds)`` whose attempt failed: keep the error and wait the backoff, or
    park the row as dead when it has had ``max_attempts``. Rows in ``refund`` failed only because a dependency was
    down (storage/outage.py): their attempt is given back and they are never parked for it (the retry window still
    bounds them). Returns ``id, type, attempts, last_error, dead_at``."""
    if not failures:
        return []
    return list(
        await conn.fetch(
            """UPDATE outbox o
               SET last_error = f.error,
                   next_attempt_at = now() + make_interval(secs => f.wait),
                   attempts = o.attempts - CASE WHEN f.refund THEN 1 ELSE 0 END,
                   dead_at = CASE WHEN o.attempts >= $4 AND NOT f.refund THEN now() END
               FROM unnest($1::bigint[], $2::text[], $3::float8[], $5::bool[]) AS f (id, error, wait, refund)
               WHERE o.id = f.id AND o.sent_at IS NULL AND o.dead_at IS NULL
               RETURNING o.id, o.type, o.attempts, o.last_error, o.dead_at""",
            [f[0] for f in failures],
            [f[1][:500] for f in failures],
            [f[2] for f in failures],
            max_attempts,
            [f[0] in refund for f in failures],
        )
    )


async def delete_sent(conn: asyncpg.Connection | asyncpg.Pool, older_than_s: float, limit: int) -> int:
    """Delete up to ``limit`` rows sent more than ``older_than_s`` ago; the number deleted."""
    return int(
        await conn.fetchval(
            """WITH gone AS (DELETE FROM outbox WHERE id IN (
                   SELECT id FROM outbox WHERE sent_at < now() - make_interval(secs => $1)
                   LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1)
               SELECT count(*) FROM gone""",
            older_than_s,
            limit,
        )
    )


async def delete_dead(conn: asyncpg.Connection | asyncpg.Pool, older_than_s: float, limit: int) -> int:
    """Delete up to ``limit`` rows parked as dead more than ``older_than_s`` ago; the number deleted."""
    return int(
        await conn.fetchval(
            """WITH gone AS (DELETE FROM outbox WHERE id IN (
                   SELECT id FROM outbox WHERE dead_at < now() - make_interval(secs => $1)
                   LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1)
               SELECT count(*) FROM gone""",
            older_than_s,
            limit,
        )
    )
