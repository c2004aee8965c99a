"""Notifications aggregate: the notifications table (migration 0006), written by the actors that notify and read
by the owner's inbox (api/routes/notifications.py).

Functions take a connection (or a pool) and never commit. Every read and write is scoped by ``owner_id``: an
inbox is only ever its owner's. A page comes back with its actors' summary columns joined in (one query).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
# A keyset position in an inbox: (created_at, id) of the last notification seen, newest first.
Position: TypeAlias = tuple[dt.datetime, int]

_PAGE = """SELECT n.id, n.type, n.post_id, n.comment_id, n.emoji, n.created_at, n.read_at,
                  u.id AS actor_id, u.username AS actor_username, u.name AS actor_name,
                  u.avatar_media_id AS actor_avatar_media_id
           FROM notifications n JOIN users u ON u.id = n.actor_id
           WHERE n.owner_id = $1"""


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


async def list_notifications(
    conn: Conn,
    owner_id: int,
    limit: int,
    after: Position | None = None,
    types: Sequence[str] | None = None,
) -> list[asyncpg.Record]:
    """The owner's notifications, newest first (notifications_owner_idx), each with its actor's ``actor_*``
    columns; only those of ``types`` when given; strictly after ``after`` when given."""
    args: list[object] = [owner_id, limit]
    where = ""
    if types is not None:
        args.append(list(types))
        where += f" AND n.type = ANY(${len(args)}::text[])"
    if after is not None:
        args.extend(after)
        where += f" AND (n.created_at, n.id) < (${len(args) - 1}, ${len(args)})"
    # Only placeholders are formatted in; every value is a parameter.
    sql = f"{_PAGE}{where} ORDER BY n.created_at DESC, n.id DESC LIMIT $2"
    return list(await conn.fetch(sql, *args))


async def count_unread(conn: Conn, owner_id: int) -> int:
    """The owner's unread notifications, exactly (notifications_unread_idx)."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM notifications WHERE owner_id = $1 AND read_at IS NULL", owner_id
    )
    return count


async def mark_read_up_to(conn: Conn, owner_id: int, up_to_id: int) -> int:
    """Mark every unread notification of the owner with id <= ``up_to_id`` read; how many changed (already
    read ones keep their first ``read_at``)."""
    status: str = await conn.execute(
        "UPDATE notifications SET read_at = now() WHERE owner_id = $1 AND id <= $2 AND read_at IS NULL",
        owner_id,
        up_to_id,
    )
    return int(status.rsplit(" ", 1)[-1])


async def mark_read_ids(conn: Conn, owner_id: int, notification_ids: Sequence[int]) -> int:
    """Mark those of ``notification_ids`` that are the owner's and unread read (others' ids match nothing); how
    many changed."""
    status: str = await conn.execute(
        """UPDATE notifications SET read_at = now()
           WHERE owner_id = $1 AND id = ANY($2::bigint[]) AND read_at IS NULL""",
        owner_id,
        list(notification_ids),
    )
    return int(status.rsplit(" ", 1)[-1])


_SAME_EVENT = "type = $1 AND actor_id = $2 AND post_id = $3 AND comment_id IS NOT DISTINCT FROM $4"


async def delete_event_notifications(
    conn: Conn, type_: str, actor_id: int, post_id: int, comment_id: int | None
) -> None:
    """An undone reaction or repost: its notification goes."""
    await conn.execute(f"DELETE FROM notifications WHERE {_SAME_EVENT}", type_, actor_id, post_id, comment_id)


async def update_event_emoji(
    conn: Conn, type_: str, actor_id: int, post_id: int, comment_id: int | None, emoji: str
) -> None:
    """A replaced reaction: its one notification shows the new emoji (nobody is notified again)."""
    await conn.execute(
        f"UPDATE notifications SET emoji = $5 WHERE {_SAME_EVENT}", type_, actor_id, post_id, comment_id, emoji
    )
