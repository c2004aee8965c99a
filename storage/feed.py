"""Home feed queries (DESIGN.md 3): the entries a user's feed is made of, straight from PostgreSQL.

A feed entry is ``(entry_id, post_id, author_id, via, at)``: a post (``entry_id`` = the post id, ``via`` = 0)
or a repost (``entry_id`` = the repost id, ``via`` = the reposter). A user's feed holds their own posts and the
posts and reposts of the people they follow, newest entry first. The Redis timeline (storage/timelines.py) is a
cache of its head; these queries rebuild it, continue past its end, check its entries (deleted posts, undone
reposts, unfollowed authors) and merge the authors who are not fanned out.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

MAX_ENTRY = (1 << 63) - 1

# Entries of the feed of $1 below entry $2: each followee's (and the user's own) newest $3 posts and reposts
# through their indexes, then the newest $3 of all (exact: the top n of a union is within each part's top n).
_SOURCE = """
WITH who AS (SELECT followee_id AS id FROM follows WHERE follower_id = $1 UNION ALL SELECT $1::bigint)
SELECT e.entry_id, e.post_id, e.author_id, e.via, e.at
FROM who CROSS JOIN LATERAL (
    (SELECT p.id AS entry_id, p.id AS post_id, p.author_id, 0::bigint AS via, p.created_at AS at
     FROM posts p WHERE p.author_id = who.id AND p.id < $2 ORDER BY p.id DESC LIMIT $3)
    UNION ALL
    (SELECT r.id, r.post_id, p.author_id, r.user_id, r.created_at
     FROM reposts r JOIN posts p ON p.id = r.post_id
     WHERE r.user_id = who.id AND who.id <> $1 AND r.id < $2 ORDER BY r.id DESC LIMIT $3)
) e
"""


async def entries_below(conn: Any, user_id: int, below: int | None, limit: int) -> list[asyncpg.Record]:
    """The newest ``limit`` entries of the user's feed older than entry ``below`` (None: the newest)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        _SOURCE + " ORDER BY e.entry_id DESC LIMIT $3", user_id, MAX_ENTRY if below is None else below, limit
    )
    return rows


async def author_entries(conn: Any, author_id: int, limit: int) -> list[asyncpg.Record]:
    """An author's newest posts and reposts as feed entries (what a new follower's timeline gets)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT * FROM (
               (SELECT p.id AS entry_id, p.id AS post_id, p.author_id, 0::bigint AS via, p.created_at AS at
                FROM posts p WHERE p.author_id = $1 ORDER BY p.id DESC LIMIT $2)
               UNION ALL
               (SELECT r.id, r.post_id, p.author_id, r.user_id, r.created_at
                FROM reposts r JOIN posts p ON p.id = r.post_id
                WHERE r.user_id = $1 ORDER BY r.id DESC LIMIT $2)) e
           ORDER BY entry_id DESC LIMIT $2""",
        author_id,
        limit,
    )
    return rows


# $1 viewer; $2..$5 timeline candidates (entry, post, author, via); $6 threshold; $7 cursor (entries below it);
# $8 floor (merged authors' entries above it only: below it the timeline was not read); $9 limit.
_PAGE = """
WITH cand AS (
    SELECT * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
        AS c (entry_id, post_id, author_id, via)
), kept AS (
    SELECT c.entry_id, c.post_id, c.via, CASE WHEN c.via = 0 THEN p.created_at ELSE r.created_at END AS at
    FROM cand c
    -- the candidates' posts and reposts by their keys (index lookups; a join on the unnest alone can make the
    -- planner scan the whole table)
    JOIN (SELECT id, author_id, created_at FROM posts WHERE id = ANY($3::bigint[])) p ON p.id = c.post_id
    LEFT JOIN (SELECT id, created_at FROM reposts WHERE id = ANY($2::bigint[])) r ON c.via <> 0 AND r.id = c.entry_id
    WHERE CASE WHEN c.via = 0
               THEN p.author_id = $1
                    OR EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = $1 AND f.followee_id = p.author_id)
               ELSE r.id IS NOT NULL AND c.via <> $1
                    AND EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = $1 AND f.followee_id = c.via)
          END
), merged AS (
    SELECT u.id FROM users u
    WHERE u.followers_count > $6
      AND (u.id = $1 OR EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = $1 AND f.followee_id = u.id))
), pulled AS (
    SELECT e.* FROM merged CROSS JOIN LATERAL (
        (SELECT p.id AS entry_id, p.id AS post_id, 0::bigint AS via, p.created_at AS at
         FROM posts p WHERE p.author_id = merged.id AND p.id < $7 AND p.id > $8 ORDER BY p.id DESC LIMIT $9)
        UNION ALL
        (SELECT r.id, r.post_id, r.user_id, r.created_at
         FROM reposts r WHERE r.user_id = merged.id AND merged.id <> $1 AND r.id < $7 AND r.id > $8
         ORDER BY r.id DESC LIMIT $9)
    ) e
)
"""


async def page_entries(
    conn: Any,
    user_id: int,
    candidates: list[tuple[int, int, int, int]],
    *,
    threshold: int,
    below: int | None,
    floor: int,
    fallback_below: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    """One page of feed entries ``(entry_id, post_id, via, at)``, newest first: the timeline's candidates that
    still belong (the post exists, its author or reposter is still followed, the repost was not undone), the
    entries of followed authors who are not fanned out (above ``floor``, below ``below``) and, with
    ``fallback_below``, the feed's entries from PostgreSQL below that entry (past the timeline's end)."""
    parts = ["SELECT * FROM kept", "SELECT * FROM pulled"]
    if fallback_below is not None:
        source = _SOURCE.replace("$2", "$10").replace("$3", "$9")  # the same source, below the fallback entry
        parts.append(f"SELECT entry_id, post_id, via, at FROM ({source}) fb")
    sql = _PAGE + " SELECT * FROM (" + " UNION ".join(parts) + ") x ORDER BY entry_id DESC LIMIT $9"
    args: list[Any] = [
        user_id,
        [c[0] for c in candidates],
        [c[1] for c in candidates],
        [c[2] for c in candidates],
        [c[3] for c in candidates],
        threshold,
        MAX_ENTRY if below is None else below,
        floor,
        limit,
    ]
    if fallback_below is not None:
        args.append(fallback_below)
    rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
    return rows


async def followers_batch(
    conn: Any, author_id: int, after: tuple[dt.datetime, int] | None, limit: int
) -> list[asyncpg.Record]:
    """The author's followers ``(follower_id, created_at)`` after a position, newest follow first (the
    followers index); a fan-out job pages through them and records the position of its last finished batch."""
    at, last = after if after is not None else (None, None)
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT follower_id, created_at FROM follows
           WHERE followee_id = $1 AND ($2::timestamptz IS NULL OR (created_at, follower_id) < ($2, $3))
           ORDER BY created_at DESC, follower_id DESC LIMIT $4""",
        author_id,
        at,
        last,
        limit,
    )
    return rows


async def followers_count(conn: Any, user_id: int) -> int | None:
    value = await conn.fetchval("SELECT followers_count FROM users WHERE id = $1", user_id)
    return None if value is None else int(value)


async def merged_followees(conn: Any, user_id: int, threshold: int) -> list[int]:
    """The people the user follows who are not fanned out (more than ``threshold`` followers)."""
    rows = await conn.fetch(
        """SELECT u.id FROM users u WHERE u.followers_count > $2
             AND EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = $1 AND f.followee_id = u.id)""",
        user_id,
        threshold,
    )
    return [int(r["id"]) for r in rows]
