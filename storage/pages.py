"""Keyset pages of (object id, time of the listed action), newest first: one query shape for every list."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

Position = tuple[dt.datetime, int] | None


async def keyset_page(conn: Any, source: str, subject: Any, limit: int, after: Position) -> list[asyncpg.Record]:
    """Rows ``(post_id, at)`` of ``source`` (SQL selecting ``post_id`` and ``at``, with ``$1`` = ``subject``)
    strictly after the position ``after``, newest first. PostgreSQL pushes the position into ``source``, so each
    list keeps to its own index."""
    at, last = after if after is not None else (None, None)
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT post_id, at FROM ({source}) x
            WHERE $2::timestamptz IS NULL OR (at, post_id) < ($2, $3)
            ORDER BY at DESC, post_id DESC LIMIT $4""",
        subject,
        at,
        last,
        limit,
    )
    return rows
