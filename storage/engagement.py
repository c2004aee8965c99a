"""Engagement aggregate (migration 0010): post counters (sharded), reactions, comments and replies, reposts,
saves, and the lists built from them. Functions take a connection and never commit.

Pages return ``(id, at)`` rows: the listed object and the time of the listed action, for keyset cursors.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import orjson

from storage.pages import Position, keyset_page
from storage.posts import MEDIA_JSON
from storage.users import USER_COLUMNS

COUNTER_SHARDS = 8
_USER = ", ".join(f"u.{c.strip()} AS user_{c.strip()}" for c in USER_COLUMNS.split(","))
COMMENT_COLUMNS = (
    "c.id, c.post_id, c.parent_id, c.author_id, c.text, c.media_id, c.reactions_count, c.replies_count, c.created_at"
)


def _after(after: Position) -> tuple[dt.datetime | None, int | None]:
    return (None, None) if after is None else after


# ------------------------------------------------------------ post counters


async def bump(conn: asyncpg.Connection, post_id: int, shard: int, deltas: dict[str, int]) -> None:
    """Add ``deltas`` (counter -> change) to the post's counters in row ``shard`` (0 <= shard < COUNTER_SHARDS: the
    writer's, actors/engagement.py ``counter_shard``)."""
    items = [(post_id, counter, shard, delta) for counter, delta in sorted(deltas.items()) if delta]
    if not items:
        return
    await conn.executemany(
        """INSERT INTO post_counts (post_id, counter, shard, n) VALUES ($1, $2, $3, $4)
           ON CONFLICT (post_id, counter, shard) DO UPDATE SET n = post_counts.n + EXCLUDED.n""",
        items,
    )


async def post_counts(conn: Any, post_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per post: ``counts`` {reactions, comments, reposts, saves} and ``reactions_summary`` {emoji: n > 0}."""
    rows = await conn.fetch(
        "SELECT post_id, counter, sum(n)::bigint AS n FROM post_counts WHERE post_id = ANY($1) GROUP BY 1, 2",
        post_ids,
    )
    out: dict[int, dict[str, Any]] = {
        pid: {"counts": {"reactions": 0, "comments": 0, "reposts": 0, "saves": 0}, "reactions_summary": {}}
        for pid in post_ids
    }
    for row in rows:
        entry = out[int(row["post_id"])]
        name, n = row["counter"], int(row["n"])
        if name.startswith("emoji:"):
            if n > 0:
                entry["reactions_summary"][name[6:]] = n
        else:
            entry["counts"][name] = n
    return out


async def post_engagement(conn: Any, post_id: int, viewer_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """One post's counts (as ``post_counts``) and the viewer's flags (reaction, reposted, saved), in one statement."""
    row = await conn.fetchrow(
        """SELECT (SELECT coalesce(json_agg(json_build_array(c.counter, c.n)), '[]')
                   FROM (SELECT counter, sum(n)::bigint AS n FROM post_counts WHERE post_id = $1 GROUP BY 1) c)
                  AS counters,
                  (SELECT emoji FROM post_reactions r WHERE r.post_id = $1 AND r.user_id = $2) AS reaction,
                  EXISTS (SELECT 1 FROM reposts r WHERE r.post_id = $1 AND r.user_id = $2) AS reposted,
                  EXISTS (SELECT 1 FROM saves s WHERE s.post_id = $1 AND s.user_id = $2) AS saved""",
        post_id,
        viewer_id,
    )
    entry: dict[str, Any] = {
        "counts": {"reactions": 0, "comments": 0, "reposts": 0, "saves": 0},
        "reactions_summary": {},
    }
    for name, n in orjson.loads(row["counters"]):
        if name.startswith("emoji:"):
            if n > 0:
                entry["reactions_summary"][name[6:]] = int(n)
        else:
            entry["counts"][name] = int(n)
    return entry, {"reaction": row["reaction"], "reposted": row["reposted"], "saved": row["saved"]}


async def lock_post(conn: asyncpg.Connection, post_id: int) -> int | None:
    """The post's author, the post row share-locked (a delete waits for this transaction); None: no such post."""
    author: int | None = await conn.fetchval("SELECT author_id FROM posts WHERE id = $1 FOR SHARE", post_id)
    return author


# ------------------------------------------------------------ reactions


async def react_to_post(
    conn: asyncpg.Connection, post_id: int, user_id: int, emoji: str
) -> tuple[int | None, str | None]:
    """Set the user's one reaction on a post, in one statement: the post share-locked (a delete waits for this
    transaction), the user's previous reaction row locked, the row written unless it already holds ``emoji``.
    Answers the post's author (None: no such post, nothing written) and the emoji replaced (None: none)."""
    row = await conn.fetchrow(
        """WITH post AS (SELECT author_id FROM posts WHERE id = $1 FOR SHARE),
                old AS (SELECT emoji FROM post_reactions WHERE post_id = $1 AND user_id = $2 FOR UPDATE),
                put AS (
                    INSERT INTO post_reactions (post_id, user_id, emoji)
                    SELECT $1, $2, $3 FROM post WHERE NOT EXISTS (SELECT 1 FROM old WHERE emoji = $3)
                    ON CONFLICT (post_id, user_id) DO UPDATE SET emoji = EXCLUDED.emoji
                )
           SELECT (SELECT author_id FROM post) AS author, (SELECT emoji FROM old) AS previous""",
        post_id,
        user_id,
        emoji,
    )
    return row["author"], row["previous"]


async def set_reaction(
    conn: asyncpg.Connection, table: str, column: str, target: int, user_id: int, emoji: str
) -> str | None:
    """Set the user's one reaction on a post or comment; the emoji it replaced (None: there was none)."""
    assert (table, column) in (("post_reactions", "post_id"), ("comment_reactions", "comment_id"))
    previous: str | None = await conn.fetchval(
        f"SELECT emoji FROM {table} WHERE {column} = $1 AND user_id = $2 FOR UPDATE", target, user_id
    )
    if previous == emoji:
        return previous
    await conn.execute(
        f"""INSERT INTO {table} ({column}, user_id, emoji) VALUES ($1, $2, $3)
            ON CONFLICT ({column}, user_id) DO UPDATE SET emoji = EXCLUDED.emoji""",
        target,
        user_id,
        emoji,
    )
    return previous


async def remove_reaction(conn: asyncpg.Connection, table: str, column: str, target: int, user_id: int) -> str | None:
    assert (table, column) in (("post_reactions", "post_id"), ("comment_reactions", "comment_id"))
    removed: str | None = await conn.fetchval(
        f"DELETE FROM {table} WHERE {column} = $1 AND user_id = $2 RETURNING emoji", target, user_id
    )
    return removed


async def list_reactors(
    conn: Any, table: str, column: str, target: int, emoji: str | None, limit: int, after: Position
) -> list[asyncpg.Record]:
    assert (table, column) in (("post_reactions", "post_id"), ("comment_reactions", "comment_id"))
    at, last = _after(after)
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT r.emoji, r.created_at AS at, r.user_id AS id, {_USER}
            FROM {table} r JOIN users u ON u.id = r.user_id
            WHERE r.{column} = $1 AND ($2::text IS NULL OR r.emoji = $2)
              AND ($3::timestamptz IS NULL OR (r.created_at, r.user_id) < ($3, $4))
            ORDER BY r.created_at DESC, r.user_id DESC LIMIT $5""",
        target,
        emoji,
        at,
        last,
        limit,
    )
    return rows


# ------------------------------------------------------------ comments


async def insert_comment(conn: asyncpg.Connection, **c: Any) -> None:
    await conn.execute(
        """INSERT INTO comments (id, post_id, parent_id, author_id, text, media_id, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        c["id"],
        c["post_id"],
        c["parent_id"],
        c["author_id"],
        c["text"],
        c["media_id"],
        c["created_at"],
    )
    if c["parent_id"] is not None:
        await conn.execute("UPDATE comments SET replies_count = replies_count + 1 WHERE id = $1", c["parent_id"])


async def get_comment(conn: Any, comment_id: int, *, lock: bool = False) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {COMMENT_COLUMNS} FROM comments c WHERE c.id = $1" + (" FOR UPDATE" if lock else ""), comment_id
    )
    return row


async def delete_comment(conn: asyncpg.Connection, comment: Any) -> int:
    """Delete a comment with all its replies (at any depth) and their notifications; how many went."""
    ids = [
        int(r["id"])
        for r in await conn.fetch(
            """WITH RECURSIVE tree AS (SELECT id FROM comments WHERE id = $1
                   UNION ALL SELECT c.id FROM comments c JOIN tree t ON c.parent_id = t.id)
               SELECT id FROM tree""",
            int(comment["id"]),
        )
    ]
    await conn.execute("DELETE FROM notifications WHERE comment_id = ANY($1)", ids)
    await conn.execute("DELETE FROM comments WHERE id = $1", int(comment["id"]))
    if comment["parent_id"] is not None:
        await conn.execute(
            "UPDATE comments SET replies_count = replies_count - 1 WHERE id = $1", int(comment["parent_id"])
        )
    return len(ids)


async def insert_comment_mentions(conn: asyncpg.Connection, comment_id: int, user_ids: list[int]) -> None:
    await conn.executemany(
        "INSERT INTO comment_mentions (comment_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [(comment_id, u) for u in user_ids],
    )


async def list_comments(
    conn: Any, post_id: int | None, parent_id: int | None, limit: int, after: Position
) -> list[asyncpg.Record]:
    """Top-level comments of a post, or the replies of a comment, newest first."""
    at, last = _after(after)
    where = "c.parent_id = $1" if parent_id is not None else "c.post_id = $1 AND c.parent_id IS NULL"
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT c.id, c.created_at AS at FROM comments c
            WHERE {where} AND ($2::timestamptz IS NULL OR (c.created_at, c.id) < ($2, $3))
            ORDER BY c.created_at DESC, c.id DESC LIMIT $4""",
        parent_id if parent_id is not None else post_id,
        at,
        last,
        limit,
    )
    return rows


async def hydrate_comments(conn: Any, comment_ids: list[int], viewer_id: int | None) -> list[asyncpg.Record]:
    """The Comment objects' rows in one query: author columns, mentioned usernames, the media row (JSON) and the
    viewer's reaction."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT {COMMENT_COLUMNS}, {_USER},
               ARRAY(SELECT mu.username FROM comment_mentions cm JOIN users mu ON mu.id = cm.user_id
                     WHERE cm.comment_id = c.id ORDER BY mu.username) AS mentions,
               (SELECT {MEDIA_JSON} FROM media m WHERE m.id = c.media_id) AS media,
               (SELECT r.emoji FROM comment_reactions r WHERE r.comment_id = c.id AND r.user_id = $2) AS my_reaction
            FROM comments c JOIN users u ON u.id = c.author_id
            WHERE c.id = ANY($1)""",
        comment_ids,
        viewer_id,
    )
    return rows


async def comment_counts(conn: Any, comment_ids: list[int]) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, post_id, reactions_count, replies_count FROM comments WHERE id = ANY($1)", comment_ids
    )
    return rows


async def bump_comment_reactions(conn: asyncpg.Connection, comment_id: int, delta: int) -> None:
    await conn.execute("UPDATE comments SET reactions_count = reactions_count + $2 WHERE id = $1", comment_id, delta)


# ------------------------------------------------------------ reposts and saves


async def add_mark(conn: asyncpg.Connection, table: str, post_id: int, user_id: int) -> bool:
    """Save (idempotent); True when it is new. Reposts: ``add_repost``."""
    assert table == "saves"
    status = await conn.execute(
        f"INSERT INTO {table} (post_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", post_id, user_id
    )
    return bool(str(status).endswith(" 1"))


async def add_repost(conn: asyncpg.Connection, repost_id: int, post_id: int, user_id: int) -> bool:
    """Repost (idempotent), as the feed entry ``repost_id``; True when it is new."""
    status = await conn.execute(
        "INSERT INTO reposts (id, post_id, user_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        repost_id,
        post_id,
        user_id,
    )
    return bool(str(status).endswith(" 1"))


async def remove_mark(conn: asyncpg.Connection, table: str, post_id: int, user_id: int) -> bool:
    assert table in ("reposts", "saves")
    status = await conn.execute(f"DELETE FROM {table} WHERE post_id = $1 AND user_id = $2", post_id, user_id)
    return bool(str(status).endswith(" 1"))


# ------------------------------------------------------------ lists of posts (post_id, at)


async def list_user_posts(conn: Any, user_id: int, limit: int, after: Position) -> list[asyncpg.Record]:
    """The user's posts and reposts, by the time they posted or reposted them, newest first."""
    source = """SELECT id AS post_id, created_at AS at FROM posts WHERE author_id = $1
                UNION ALL SELECT post_id, created_at AS at FROM reposts WHERE user_id = $1"""
    return await keyset_page(conn, source, user_id, limit, after)


_MARKED = {
    "saved": "SELECT post_id, created_at AS at FROM saves WHERE user_id = $1",
    "reacted": "SELECT post_id, created_at AS at FROM post_reactions WHERE user_id = $1",
    "commented": "SELECT post_id, max(created_at) AS at FROM comments WHERE author_id = $1 GROUP BY post_id",
}


async def list_marked(conn: Any, kind: str, user_id: int, limit: int, after: Position) -> list[asyncpg.Record]:
    """Posts the user saved, reacted to or commented on, by the time of that action (the latest comment)."""
    return await keyset_page(conn, _MARKED[kind], user_id, limit, after)
