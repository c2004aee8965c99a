"""Posts aggregate (migration 0009): posts, their media, mentions and hashtags; the idempotency-key store.

Functions take a connection and never commit. Pages return post ids with the time of the listed action (the
post's creation, the mention, the tag), for keyset cursors; ``hydrate`` reads everything a page of Post objects
needs with one query per kind.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from storage import db
from storage.pages import Position, keyset_page
from storage.users import USER_COLUMNS

_AUTHOR = ", ".join(f"u.{c.strip()} AS author_{c.strip()}" for c in USER_COLUMNS.split(","))


async def insert_post(
    conn: asyncpg.Connection, post_id: int, author_id: int, type_: str, caption: str, at: dt.datetime
) -> None:
    await conn.execute(
        "INSERT INTO posts (id, author_id, type, caption, created_at) VALUES ($1, $2, $3, $4, $5)",
        post_id,
        author_id,
        type_,
        caption,
        at,
    )
    await db.add_to_counters(conn, "users", [(author_id, "posts_count", 1)])


async def attach_media(conn: asyncpg.Connection, post_id: int, media_ids: list[int]) -> None:
    await conn.executemany(
        "INSERT INTO post_media (post_id, position, media_id) VALUES ($1, $2, $3)",
        [(post_id, i, m) for i, m in enumerate(media_ids)],
    )


async def insert_mentions(conn: asyncpg.Connection, post_id: int, user_ids: list[int], at: dt.datetime) -> None:
    await conn.executemany(
        "INSERT INTO post_mentions (post_id, user_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        [(post_id, u, at) for u in user_ids],
    )


async def insert_hashtags(conn: asyncpg.Connection, post_id: int, tags: list[str], at: dt.datetime) -> None:
    if not tags:
        return
    await conn.execute(  # new tags (a tag's row is shared: its count is added with the batch's, add_to_counters)
        """INSERT INTO hashtags (tag, posts_count, last_used_at) SELECT t, 0, now() FROM unnest($1::text[]) t
           ON CONFLICT (tag) DO NOTHING""",
        sorted(tags),
    )
    await db.add_to_counters(conn, "hashtags", [(tag, "posts_count", 1) for tag in tags])
    await conn.executemany(
        "INSERT INTO post_hashtags (post_id, tag, created_at) VALUES ($1, $2, $3)", [(post_id, t, at) for t in tags]
    )


async def find_user_ids(conn: Any, usernames: list[str]) -> dict[str, int]:
    rows = await conn.fetch("SELECT id, username FROM users WHERE username = ANY($1)", usernames)
    return {r["username"]: int(r["id"]) for r in rows}


async def get_author(conn: Any, post_id: int) -> int | None:
    author: int | None = await conn.fetchval("SELECT author_id FROM posts WHERE id = $1", post_id)
    return author


async def delete_post(conn: asyncpg.Connection, post_id: int) -> bool:
    """Delete the post and everything that lists or counts it; False when there was no such post."""
    author = await conn.fetchval("SELECT author_id FROM posts WHERE id = $1 FOR UPDATE", post_id)
    if author is None:
        return False
    tags = [r["tag"] for r in await conn.fetch("SELECT tag FROM post_hashtags WHERE post_id = $1", post_id)]
    if tags:
        await db.add_to_counters(conn, "hashtags", [(tag, "posts_count", -1) for tag in tags])
    await conn.execute("DELETE FROM notifications WHERE post_id = $1", post_id)
    await conn.execute("DELETE FROM posts WHERE id = $1", post_id)
    await db.add_to_counters(conn, "users", [(author, "posts_count", -1)])
    return True


# ------------------------------------------------------------ pages (ids with the time of the listed action)


async def list_by_author(conn: Any, author_id: int, limit: int, after: Position) -> list[asyncpg.Record]:
    source = "SELECT id AS post_id, created_at AS at FROM posts WHERE author_id = $1"
    return await keyset_page(conn, source, author_id, limit, after)


async def list_by_tag(conn: Any, tag: str, limit: int, after: Position) -> list[asyncpg.Record]:
    source = "SELECT post_id, created_at AS at FROM post_hashtags WHERE tag = $1"
    return await keyset_page(conn, source, tag, limit, after)


async def list_mentioning(conn: Any, user_id: int, limit: int, after: Position) -> list[asyncpg.Record]:
    source = "SELECT post_id, created_at AS at FROM post_mentions WHERE user_id = $1"
    return await keyset_page(conn, source, user_id, limit, after)


async def get_hashtag(conn: Any, tag: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow("SELECT tag, posts_count FROM hashtags WHERE tag = $1", tag)
    return row


# ------------------------------------------------------------ hydration


MEDIA_JSON = """jsonb_build_object('id', m.id, 'kind', m.kind, 'content_type', m.content_type, 'size', m.size,
    'declared_size', m.declared_size, 'public', m.public, 'state', m.state, 'width', m.width, 'height', m.height,
    'duration_ms', m.duration_ms, 'blurhash', m.blurhash, 'name', m.name, 'thumb_key', m.thumb_key)"""


# The parts of a post that change, and the session check: $2 the viewer (NULL: anonymous), $3 their session.
_LIVE = """(SELECT jsonb_object_agg(c.counter, c.n) FROM (
                    SELECT counter, sum(n) AS n FROM post_counts pc WHERE pc.post_id = p.id GROUP BY counter) c
               ) AS counters,
               (SELECT r.emoji FROM post_reactions r WHERE r.post_id = p.id AND r.user_id = $2) AS my_reaction,
               EXISTS (SELECT 1 FROM reposts rp WHERE rp.post_id = p.id AND rp.user_id = $2) AS my_reposted,
               EXISTS (SELECT 1 FROM saves sv WHERE sv.post_id = p.id AND sv.user_id = $2) AS my_saved,
               ($3::bigint IS NULL OR EXISTS (SELECT 1 FROM sessions s WHERE s.id = $3 AND s.user_id = $2
                    AND s.revoked_at IS NULL AND s.expires_at > now())) AS session_live"""


async def hydrate(
    conn: Any, post_ids: list[int], viewer_id: int | None, session_id: int | None = None
) -> list[asyncpg.Record]:
    """Everything the Post objects of these ids need, in one query: each post with its author, its media (JSON,
    in order), mentioned usernames, hashtags, summed counters (JSON, counter -> n) and, for a viewer, their
    reaction, repost and save; with ``session_id``, ``session_live``: whether the viewer's session is live (the
    read and its session check in one round trip, as GET /me does)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT p.id, p.author_id, p.type, p.caption, p.created_at, {_AUTHOR},
               (SELECT coalesce(jsonb_agg({MEDIA_JSON} ORDER BY pm.position), '[]'::jsonb)
                  FROM post_media pm JOIN media m ON m.id = pm.media_id WHERE pm.post_id = p.id) AS media,
               ARRAY(SELECT mu.username FROM post_mentions pn JOIN users mu ON mu.id = pn.user_id
                     WHERE pn.post_id = p.id ORDER BY mu.username) AS mentions,
               ARRAY(SELECT ph.tag FROM post_hashtags ph WHERE ph.post_id = p.id ORDER BY ph.tag) AS tags,
               {_LIVE}
            FROM posts p JOIN users u ON u.id = p.author_id WHERE p.id = ANY($1)""",
        post_ids,
        viewer_id,
        session_id,
    )
    return rows


async def live_parts(
    conn: Any, post_ids: list[int], viewer_id: int | None, session_id: int | None = None
) -> list[asyncpg.Record]:
    """The parts of these posts that change (summed counters, the viewer's reaction, repost and save) and, with
    ``session_id``, ``session_live``; a post that is gone has no row. The rest of a post never changes after it
    is created (its author's summary aside), so a reader that holds it needs only this."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT p.id,
               {_LIVE}
            FROM posts p WHERE p.id = ANY($1)""",
        post_ids,
        viewer_id,
        session_id,
    )
    return rows


# ------------------------------------------------------------ idempotency keys


async def find_idempotent(conn: Any, user_id: int, route: str, key: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        """SELECT body_hash, status, response FROM idempotency_keys
           WHERE user_id = $1 AND route = $2 AND key = $3 AND created_at > now() - interval '24 hours'""",
        user_id,
        route,
        key,
    )
    return row


async def save_idempotent(
    conn: asyncpg.Connection, user_id: int, route: str, key: str, body_hash: bytes, status: int, response: bytes
) -> None:
    await conn.execute(
        """INSERT INTO idempotency_keys (user_id, route, key, body_hash, status, response)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (user_id, route, key) DO UPDATE
           SET body_hash = EXCLUDED.body_hash, status = EXCLUDED.status, response = EXCLUDED.response,
               created_at = now()""",
        user_id,
        route,
        key,
        body_hash,
        status,
        response,
    )


async def delete_old_idempotency_keys(conn: Any, older_than_s: float, limit: int) -> int:
    return int(
        await conn.fetchval(
            """WITH gone AS (DELETE FROM idempotency_keys WHERE ctid IN (
                   SELECT ctid FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)
                   LIMIT $2) RETURNING 1)
               SELECT count(*) FROM gone""",
            older_than_s,
            limit,
        )
    )


async def post_exists(conn: Any, post_id: int) -> bool:
    """Whether the post exists (a topic subscription, a reactor list of an unknown post)."""
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM posts WHERE id = $1)", post_id))
