"""Chats aggregate (migration 0008): chats, their members' receipts, messages, reactions, hidden messages.

Functions take a connection and never commit. Message rows come back with their sender's summary columns and
their reactions aggregated (``emoji -> [username]``, oldest first), so a page is one query (plus one for media).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import orjson

_MESSAGE = """m.id, m.chat_id, m.seq, m.sender_id, m.client_id, m.type, m.text, m.media_id, m.caption,
    m.duration_ms, m.reply_to, m.deleted, m.created_at, m.edited_at,
    u.username AS sender_username, u.name AS sender_name, u.avatar_media_id AS sender_avatar_media_id,
    (SELECT jsonb_object_agg(x.emoji, x.names) FROM (
        SELECT r.emoji, jsonb_agg(ru.username ORDER BY r.created_at, ru.username) AS names
        FROM message_reactions r JOIN users ru ON ru.id = r.user_id
        WHERE r.message_id = m.id GROUP BY r.emoji) x) AS reactions"""


def reactions_of(row: Any) -> dict[str, list[str]]:
    value = row["reactions"]
    if value is None:
        return {}
    parsed: dict[str, list[str]] = orjson.loads(value) if isinstance(value, str | bytes) else value
    return parsed


# ------------------------------------------------------------ chats and members


async def get_or_create_chat(conn: asyncpg.Connection, chat_id: int, a: int, b: int) -> tuple[asyncpg.Record, bool]:
    """The chat of users ``a`` and ``b`` (one per pair), made with ``chat_id`` if there is none: (row, created)."""
    low, high = sorted((a, b))
    row = await conn.fetchrow(
        """INSERT INTO chats (id, user_low, user_high) VALUES ($1, $2, $3)
           ON CONFLICT (user_low, user_high) DO NOTHING RETURNING id, last_seq, created_at, updated_at""",
        chat_id,
        low,
        high,
    )
    if row is not None:
        await conn.executemany(
            "INSERT INTO chat_members (chat_id, user_id, peer_id) VALUES ($1, $2, $3)",
            [(chat_id, low, high), (chat_id, high, low)],
        )
        return row, True
    existing = await conn.fetchrow(
        "SELECT id, last_seq, created_at, updated_at FROM chats WHERE user_low = $1 AND user_high = $2", low, high
    )
    assert existing is not None
    return existing, False


async def load_chat(conn: Any, chat_id: int) -> list[asyncpg.Record]:
    """The chat's members with their receipts and the chat's ``last_seq`` (empty: no such chat)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT c.last_seq, m.user_id, m.peer_id, m.delivered_seq, m.read_seq, u.username
           FROM chats c JOIN chat_members m ON m.chat_id = c.id JOIN users u ON u.id = m.user_id
           WHERE c.id = $1""",
        chat_id,
    )
    return rows


async def is_member(conn: Any, chat_id: int, user_id: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id = $2)", chat_id, user_id
        )
    )


async def append_message(conn: asyncpg.Connection, expected: int, **m: Any) -> asyncpg.Record | None:
    """A message of the chat's writer in one statement: the chat moves from ``expected`` to ``expected + 1`` (the
    seq guard: a second holder of the chat, such as a stale shard, finds it moved), the message takes that seq, the
    members' chat lists are touched; answers the sender's summary columns with the ``seq`` (None when the chat was
    not at ``expected``: another writer)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """WITH advanced AS (
               UPDATE chats SET last_seq = last_seq + 1, updated_at = $11 WHERE id = $2 AND last_seq = $12
               RETURNING last_seq
           ), message AS (
               INSERT INTO messages (id, chat_id, seq, sender_id, client_id, type, text, media_id, caption,
                                     duration_ms, reply_to, created_at)
               SELECT $1, $2, last_seq, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM advanced
               RETURNING seq
           ), touched AS (
               UPDATE chat_members SET updated_at = $11 WHERE chat_id = $2 AND EXISTS (SELECT 1 FROM advanced)
           )
           SELECT (SELECT seq FROM message) AS seq, u.id, u.username, u.name, u.avatar_media_id
           FROM users u WHERE u.id = $3""",
        m["id"],
        m["chat_id"],
        m["sender_id"],
        m["client_id"],
        m["type"],
        m["text"],
        m["media_id"],
        m["caption"],
        m["duration_ms"],
        m["reply_to"],
        m["created_at"],
        expected,
    )
    if row is None or row["seq"] is None:
        return None
    return row


async def set_receipts(conn: asyncpg.Connection, chat_id: int, user_id: int, delivered: int, read: int) -> None:
    await conn.execute(
        """UPDATE chat_members SET delivered_seq = GREATEST(delivered_seq, $3), read_seq = GREATEST(read_seq, $4)
           WHERE chat_id = $1 AND user_id = $2""",
        chat_id,
        user_id,
        delivered,
        read,
    )


def _position(cursor: tuple[dt.datetime, int] | None) -> tuple[dt.datetime | None, int | None]:
    return (None, None) if cursor is None else cursor


async def list_chats(
    conn: Any, user_id: int, limit: int, after: tuple[dt.datetime, int] | None, chat_id: int | None = None
) -> list[asyncpg.Record]:
    """The user's chats, most recent activity first, with the peer, the unread count (the peer's messages after
    my read position, not deleted) and the last message visible to me."""
    at, last_id = _position(after)
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT cm.chat_id, cm.updated_at, cm.read_seq, cm.delivered_seq,
                   p.id AS peer_id, p.username AS peer_username, p.name AS peer_name,
                   p.avatar_media_id AS peer_avatar_media_id,
                   (SELECT count(*) FROM messages um WHERE um.chat_id = cm.chat_id AND um.seq > cm.read_seq
                        AND um.sender_id <> cm.user_id AND NOT um.deleted) AS unread_count,
                   (SELECT m.id FROM messages m WHERE m.chat_id = cm.chat_id
                      AND NOT EXISTS (SELECT 1 FROM message_hidden h
                                      WHERE h.user_id = cm.user_id AND h.message_id = m.id)
                    ORDER BY m.seq DESC LIMIT 1) AS last_message_id
            FROM chat_members cm
            JOIN users p ON p.id = cm.peer_id
            WHERE cm.user_id = $1 AND ($2::timestamptz IS NULL OR (cm.updated_at, cm.chat_id) < ($2, $3))
              AND ($5::bigint IS NULL OR cm.chat_id = $5)
            ORDER BY cm.updated_at DESC, cm.chat_id DESC
            LIMIT $4""",
        user_id,
        at,
        last_id,
        limit,
        chat_id,
    )
    return rows


# ------------------------------------------------------------ messages


async def get_message(conn: Any, chat_id: int, message_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {_MESSAGE} FROM messages m JOIN users u ON u.id = m.sender_id WHERE m.chat_id = $1 AND m.id = $2",
        chat_id,
        message_id,
    )
    return row


async def find_by_client_id(conn: Any, chat_id: int, sender_id: int, client_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""SELECT {_MESSAGE} FROM messages m JOIN users u ON u.id = m.sender_id
            WHERE m.chat_id = $1 AND m.sender_id = $2 AND m.client_id = $3""",
        chat_id,
        sender_id,
        client_id,
    )
    return row


async def list_messages_by_id(conn: Any, message_ids: list[int]) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {_MESSAGE} FROM messages m JOIN users u ON u.id = m.sender_id WHERE m.id = ANY($1)", message_ids
    )
    return rows


async def list_messages(
    conn: Any, chat_id: int, viewer_id: int, *, before_seq: int | None, after_seq: int | None, limit: int
) -> list[asyncpg.Record]:
    """A page of the chat as ``viewer_id`` sees it (hidden-for-me messages left out): the newest before
    ``before_seq`` (newest first); or, with ``after_seq``, the oldest after it (and before ``before_seq`` when
    both are given), oldest first."""
    order = "ASC" if after_seq is not None else "DESC"
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT {_MESSAGE} FROM messages m JOIN users u ON u.id = m.sender_id
            WHERE m.chat_id = $1 AND m.seq > $3 AND m.seq < $4
              AND NOT EXISTS (SELECT 1 FROM message_hidden h WHERE h.user_id = $2 AND h.message_id = m.id)
            ORDER BY m.seq {order} LIMIT $5""",
        chat_id,
        viewer_id,
        after_seq if after_seq is not None else 0,
        before_seq if before_seq is not None else (1 << 62),
        limit,
    )
    return rows


async def update_text(conn: asyncpg.Connection, message_id: int, text: str, at: dt.datetime) -> None:
    await conn.execute("UPDATE messages SET text = $2, edited_at = $3 WHERE id = $1", message_id, text, at)


async def delete_for_everyone(conn: asyncpg.Connection, message_id: int) -> None:
    await conn.execute(
        "UPDATE messages SET deleted = true, text = NULL, media_id = NULL, caption = NULL WHERE id = $1", message_id
    )
    await conn.execute("DELETE FROM message_reactions WHERE message_id = $1", message_id)


async def hide_for(conn: asyncpg.Connection, message_id: int, user_id: int) -> None:
    await conn.execute(
        "INSERT INTO message_hidden (message_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", message_id, user_id
    )


async def set_reaction(conn: asyncpg.Connection, message_id: int, user_id: int, emoji: str) -> str | None:
    """Set the member's one reaction; the emoji it replaced (None if none; the same emoji if unchanged)."""
    previous: str | None = await conn.fetchval(
        "SELECT emoji FROM message_reactions WHERE message_id = $1 AND user_id = $2 FOR UPDATE", message_id, user_id
    )
    await conn.execute(
        """INSERT INTO message_reactions (message_id, user_id, emoji) VALUES ($1, $2, $3)
           ON CONFLICT (message_id, user_id) DO UPDATE SET emoji = EXCLUDED.emoji, created_at = now()""",
        message_id,
        user_id,
        emoji,
    )
    return previous


async def remove_reaction(conn: asyncpg.Connection, message_id: int, user_id: int) -> str | None:
    """Remove the member's reaction; the emoji removed, or None when there was none."""
    removed: str | None = await conn.fetchval(
        "DELETE FROM message_reactions WHERE message_id = $1 AND user_id = $2 RETURNING emoji", message_id, user_id
    )
    return removed
