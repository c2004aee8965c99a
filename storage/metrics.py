"""Reads for ``GET /metrics``: the state of the outbox, counted at scrape time.

Each count stops at ``cap`` rows (a ``LIMIT`` inside the count), so a scrape costs at most ``cap`` index entries
per count however far behind the relay is; a value equal to ``cap`` means "at least". The unsent counts walk the
partial index ``outbox_due_idx`` (unsent, not dead), the dead count ``outbox_dead_idx``.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

OUTBOX_COUNT_CAP = 100_000

_COUNTS = """
SELECT
  (SELECT count(*) FROM (SELECT 1 FROM outbox WHERE sent_at IS NULL AND dead_at IS NULL LIMIT $1) t) AS backlog,
  (SELECT count(*) FROM (SELECT 1 FROM outbox
                         WHERE sent_at IS NULL AND dead_at IS NULL AND last_error IS NOT NULL LIMIT $1) t) AS retrying,
  (SELECT count(*) FROM (SELECT 1 FROM outbox WHERE dead_at IS NOT NULL LIMIT $1) t) AS dead
"""


@dataclass(frozen=True)
class OutboxCounts:
    backlog: int  # unsent and not dead: waiting for their writer's publish or for the relay
    retrying: int  # of those, rows a relay attempt failed for: waiting for their next attempt (backoff)
    dead: int  # parked after too many attempts: never published (until retention deletes them)


async def get_outbox_counts(conn: asyncpg.Connection | asyncpg.Pool, cap: int = OUTBOX_COUNT_CAP) -> OutboxCounts:
    row = await conn.fetchrow(_COUNTS, cap)
    assert row is not None
    return OutboxCounts(backlog=int(row["backlog"]), retrying=int(row["retrying"]), dead=int(row["dead"]))
