"""Notifications aggregate: SQL for the notifications table (the inbox reads come with the posts issue)."""

from __future__ import annotations

import asyncpg


async def insert_notification(
    conn: asyncpg.Connection,
    *,
    notification_id: int,
    owner_id: int,
    type_: str,
    actor_id: int,
    post_id: int | None = None,
    comment_id: int | None = None,
    emoji: str | None = None,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        """INSERT INTO notifications (id, owner_id, type, actor_id, post_id, comment_id, emoji)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           RETURNING id, owner_id, type, actor_id, post_id, comment_id, emoji, created_at, read_at""",
        notification_id,
        owner_id,
        type_,
        actor_id,
        post_id,
        comment_id,
        emoji,
    )
    assert row is not None
    return row
