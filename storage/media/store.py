"""Media aggregate: SQL for the media table (migration 0007). Functions take a connection and never commit."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from storage.errors import RowNotFound

MEDIA_COLUMNS = (
    "id, owner_id, purpose, kind, content_type, declared_size, size, name, state, public, object_key, thumb_key, "
    "width, height, duration_ms, blurhash, created_at, upload_expires_at, completed_at"
)


async def insert_media(
    conn: Any,
    *,
    media_id: int,
    owner_id: int,
    purpose: str,
    kind: str,
    content_type: str,
    declared_size: int,
    name: str | None,
    object_key: str,
    upload_expires_at: dt.datetime,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"""INSERT INTO media (id, owner_id, purpose, kind, content_type, declared_size, name, object_key,
                               upload_expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {MEDIA_COLUMNS}""",
        media_id,
        owner_id,
        purpose,
        kind,
        content_type,
        declared_size,
        name,
        object_key,
        upload_expires_at,
    )
    assert row is not None
    return row


async def count_recent_pending(conn: Any, owner_id: int, since: dt.datetime) -> int:
    """The owner's uploads still pending that were started after ``since``."""
    count = await conn.fetchval(
        "SELECT count(*) FROM media WHERE owner_id = $1 AND state = 'pending' AND created_at > $2", owner_id, since
    )
    return int(count)


async def get_media(conn: Any, media_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(f"SELECT {MEDIA_COLUMNS} FROM media WHERE id = $1", media_id)
    if row is None:
        raise RowNotFound(f"media {media_id}")
    return row


async def find_media(conn: Any, media_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(f"SELECT {MEDIA_COLUMNS} FROM media WHERE id = $1", media_id)
    return row


async def list_media(conn: Any, media_ids: list[int]) -> list[asyncpg.Record]:
    """The rows of these ids (any order; missing ids are absent)."""
    rows: list[asyncpg.Record] = await conn.fetch(f"SELECT {MEDIA_COLUMNS} FROM media WHERE id = ANY($1)", media_ids)
    return rows


async def lock_media(conn: asyncpg.Connection, media_ids: list[int]) -> list[asyncpg.Record]:
    """The rows of these ids, share-locked until the transaction ends (an attach sees them stay as checked)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {MEDIA_COLUMNS} FROM media WHERE id = ANY($1) ORDER BY id FOR SHARE", media_ids
    )
    return rows


async def complete_media(conn: Any, media_id: int, facts: dict[str, Any]) -> asyncpg.Record | None:
    """Make a pending row ready with what the server measured; None when it is not pending (any more)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""UPDATE media SET state = 'ready', completed_at = now(), size = $2, content_type = $3, width = $4,
                   height = $5, duration_ms = $6, blurhash = $7, thumb_key = $8
            WHERE id = $1 AND state = 'pending' RETURNING {MEDIA_COLUMNS}""",
        media_id,
        facts["size"],
        facts["content_type"],
        facts.get("width"),
        facts.get("height"),
        facts.get("duration_ms"),
        facts.get("blurhash"),
        facts.get("thumb_key"),
    )
    return row


async def make_public(conn: asyncpg.Connection, media_ids: list[int]) -> None:
    await conn.execute("UPDATE media SET public = true WHERE id = ANY($1) AND NOT public", media_ids)


async def list_abandoned(conn: Any, older_than_s: float, limit: int) -> list[int]:
    """Ids of up to ``limit`` uploads still pending after ``older_than_s``, oldest first."""
    rows = await conn.fetch(
        """SELECT id FROM media WHERE state = 'pending' AND created_at < now() - make_interval(secs => $1)
           ORDER BY created_at LIMIT $2""",
        older_than_s,
        limit,
    )
    return [int(r["id"]) for r in rows]


async def delete_pending(conn: Any, media_ids: list[int]) -> int:
    """Delete these rows if they are still pending; the number deleted."""
    if not media_ids:
        return 0
    status = await conn.execute("DELETE FROM media WHERE id = ANY($1) AND state = 'pending'", media_ids)
    return int(status.split()[-1])
