"""Interests (topics): the catalogue, who follows which, and which posts belong to which (issue 14).

Functions take a connection and never commit. ``followers_count`` changes in the same statement sequence as the
follows row it counts (``follow`` / ``unfollow``), in the caller's transaction. A post is tagged with its interests
by ``tag_post`` inside the post's create transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import asyncpg

_COLUMNS = "i.slug, i.name, i.position, i.followers_count"


def _followed(viewer_id: int | None, arg: str) -> str:
    """The ``followed_by_me`` column for a viewer given as parameter ``arg`` (false for anonymous)."""
    if viewer_id is None:
        return "false AS followed_by_me"
    return f"EXISTS (SELECT 1 FROM interest_follows f WHERE f.user_id = {arg} AND f.slug = i.slug) AS followed_by_me"


async def list_interests(conn: Any, viewer_id: int | None, after: int | None, limit: int) -> list[asyncpg.Record]:
    """The catalogue in its order, after catalogue position ``after``, with the viewer's flag."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT {_COLUMNS}, {_followed(viewer_id, "$3")} FROM interests i
            WHERE i.position > $1::bigint ORDER BY i.position LIMIT $2""",
        after or 0,
        limit,
        *([viewer_id] if viewer_id is not None else []),
    )
    return rows


async def find_interest(conn: Any, slug: str, viewer_id: int | None) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {_COLUMNS}, {_followed(viewer_id, '$2')} FROM interests i WHERE i.slug = $1",
        slug,
        *([viewer_id] if viewer_id is not None else []),
    )
    return row


async def exists(conn: Any, slug: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM interests WHERE slug = $1)", slug))


async def follow(conn: asyncpg.Connection, user_id: int, slug: str) -> bool:
    """Follow; True when the row is new (the counter went up), False when it already existed."""
    created = await conn.fetchval(
        """INSERT INTO interest_follows (user_id, slug) VALUES ($1, $2)
           ON CONFLICT (user_id, slug) DO NOTHING RETURNING true""",
        user_id,
        slug,
    )
    if created:
        await conn.execute("UPDATE interests SET followers_count = followers_count + 1 WHERE slug = $1", slug)
    return bool(created)


async def unfollow(conn: asyncpg.Connection, user_id: int, slug: str) -> bool:
    status: str = await conn.execute("DELETE FROM interest_follows WHERE user_id = $1 AND slug = $2", user_id, slug)
    removed = status != "DELETE 0"
    if removed:
        await conn.execute("UPDATE interests SET followers_count = followers_count - 1 WHERE slug = $1", slug)
    return removed


async def my_interests(
    conn: Any, user_id: int, after: tuple[dt.datetime, int] | None, limit: int
) -> list[asyncpg.Record]:
    """The interests a user follows, newest follow first: catalogue rows plus ``followed_at``; the keyset
    position is (followed_at, catalogue position)."""
    at, position = after if after is not None else (None, None)
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT {_COLUMNS}, true AS followed_by_me, f.created_at AS followed_at
            FROM interest_follows f JOIN interests i ON i.slug = f.slug
            WHERE f.user_id = $1 AND ($2::timestamptz IS NULL OR (f.created_at, i.position::bigint) < ($2, $3::bigint))
            ORDER BY f.created_at DESC, i.position DESC LIMIT $4""",
        user_id,
        at,
        position,
        limit,
    )
    return rows


async def followed_slugs(conn: Any, user_id: int) -> list[str]:
    rows = await conn.fetch("SELECT slug FROM interest_follows WHERE user_id = $1", user_id)
    return [r["slug"] for r in rows]


async def tag_post(
    conn: asyncpg.Connection, post_id: int, author_id: int, tags: Sequence[str], words: Sequence[str]
) -> list[str]:
    """Tag a new post with every interest its hashtags (the slug itself or one of the interest's hashtags) or its
    caption words (the interest's keywords) mark; returns the slugs. The catalogue is a few dozen rows."""
    rows = await conn.fetch(
        """INSERT INTO post_interests (post_id, slug, author_id)
           SELECT $1, i.slug, $2 FROM interests i
           WHERE i.slug = ANY($3::text[]) OR i.hashtags && $3::text[] OR i.keywords && $4::text[]
           ON CONFLICT DO NOTHING RETURNING slug""",
        post_id,
        author_id,
        list(tags),
        list(words),
    )
    return sorted(r["slug"] for r in rows)


async def post_page(conn: Any, slug: str, before: tuple[dt.datetime, int] | None, limit: int) -> list[asyncpg.Record]:
    """An interest's posts, newest first, as ``(post_id, at)`` (post ids are time-ordered, so the index order is
    the time order)."""
    last = before[1] if before is not None else (1 << 63) - 1
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT pi.post_id, p.created_at AS at FROM post_interests pi JOIN posts p ON p.id = pi.post_id
           WHERE pi.slug = $1 AND pi.post_id < $2 ORDER BY pi.post_id DESC LIMIT $3""",
        slug,
        last,
        limit,
    )
    return rows


async def slugs_of_posts(conn: Any, post_ids: Sequence[int]) -> dict[int, list[str]]:
    rows = await conn.fetch(
        "SELECT post_id, array_agg(slug ORDER BY slug) AS slugs FROM post_interests WHERE post_id = ANY($1::bigint[]) "
        "GROUP BY post_id",
        list(post_ids),
    )
    return {int(r["post_id"]): list(r["slugs"]) for r in rows}
