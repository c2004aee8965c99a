"""Explore's SQL (issue 14): the candidate sources, the facts the ranking needs, feedback, knobs, and the refresh
of the small precomputed tables (trending, each interest's top posts and authors).

Every candidate query walks an index from a small, bounded start (the caller's followed interests, followees,
recent reactions) with a LIMIT per branch; none scans posts or users. Functions take a connection and never
commit, except ``refresh``, which owns its transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

# ENGAGEMENT of a post: reactions + 2 x comments + 3 x reposts (as search ranks), summed over the counter shards.
ENGAGEMENT = """coalesce((SELECT sum(CASE c.counter WHEN 'reactions' THEN c.n WHEN 'comments' THEN 2 * c.n
                                          ELSE 3 * c.n END)
                          FROM post_counts c WHERE c.post_id = p.id
                            AND c.counter IN ('reactions', 'comments', 'reposts')), 0)"""


async def interest_posts(conn: Any, slugs: Sequence[str], floor_id: int, per_slug: int) -> list[asyncpg.Record]:
    """Posts of these interests: each one's newest ``per_slug`` (ids above ``floor_id``) and its precomputed
    most engaging recent ones. Rows ``(post_id, slug)``."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT x.post_id, x.slug FROM unnest($1::text[]) AS s (slug) CROSS JOIN LATERAL (
               (SELECT pi.post_id, pi.slug FROM post_interests pi
                WHERE pi.slug = s.slug AND pi.post_id > $2 ORDER BY pi.post_id DESC LIMIT $3)
               UNION
               (SELECT t.post_id, t.slug FROM interest_top_posts t
                WHERE t.slug = s.slug ORDER BY t.score DESC LIMIT $3)
           ) x""",
        list(slugs),
        floor_id,
        per_slug,
    )
    return rows


async def engaged_by_following(
    conn: Any, user_id: int, since_s: float, followees: int, per_followee: int, limit: int
) -> list[asyncpg.Record]:
    """Posts the caller's followees (the ``followees`` most recently followed) reacted to or commented on in the
    last ``since_s`` seconds: rows ``(post_id, users, n)`` with every such followee's id, most of them first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """WITH f AS (SELECT followee_id FROM follows WHERE follower_id = $1
                      ORDER BY created_at DESC LIMIT $3)
           SELECT e.post_id, array_agg(DISTINCT e.user_id) AS users, count(DISTINCT e.user_id) AS n
           FROM f CROSS JOIN LATERAL (
               (SELECT r.post_id, r.user_id FROM post_reactions r
                WHERE r.user_id = f.followee_id AND r.created_at > now() - make_interval(secs => $2)
                ORDER BY r.created_at DESC LIMIT $4)
               UNION ALL
               (SELECT c.post_id, c.author_id FROM comments c
                WHERE c.author_id = f.followee_id AND c.created_at > now() - make_interval(secs => $2)
                ORDER BY c.created_at DESC LIMIT $4)
           ) e
           GROUP BY e.post_id ORDER BY n DESC, e.post_id DESC LIMIT $5""",
        user_id,
        since_s,
        followees,
        per_followee,
        limit,
    )
    return rows


async def similar_users_posts(
    conn: Any, user_id: int, since_s: float, mine: int, per_post: int, peers: int, per_peer: int, limit: int
) -> list[asyncpg.Record]:
    """Posts popular among users who engage like the caller: the people who reacted to the same posts as the
    caller's ``mine`` latest reactions (``per_post`` each), the ``peers`` with most in common, and what they
    reacted to in the last ``since_s`` seconds. Rows ``(post_id, n)``: how many such peers reacted."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """WITH mine AS (SELECT post_id FROM post_reactions WHERE user_id = $1 ORDER BY created_at DESC LIMIT $3),
           peers AS (
               SELECT o.user_id, count(*) AS common FROM mine CROSS JOIN LATERAL (
                   SELECT r.user_id FROM post_reactions r WHERE r.post_id = mine.post_id AND r.user_id <> $1
                   ORDER BY r.created_at DESC LIMIT $4) o
               GROUP BY o.user_id ORDER BY common DESC, o.user_id LIMIT $5)
           SELECT t.post_id, count(*) AS n FROM peers CROSS JOIN LATERAL (
               SELECT r.post_id FROM post_reactions r
               WHERE r.user_id = peers.user_id AND r.created_at > now() - make_interval(secs => $2)
               ORDER BY r.created_at DESC LIMIT $6) t
           GROUP BY t.post_id ORDER BY n DESC, t.post_id DESC LIMIT $7""",
        user_id,
        since_s,
        mine,
        per_post,
        peers,
        per_peer,
        limit,
    )
    return rows


async def trending(conn: Any, limit: int) -> list[asyncpg.Record]:
    """The precomputed trending posts, best first: rows ``(post_id, score)``."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT post_id, score FROM trending_posts ORDER BY score DESC, post_id DESC LIMIT $1", limit
    )
    return rows


async def recent(conn: Any, floor_id: int, limit: int) -> list[asyncpg.Record]:
    """The newest posts of all (the primary key's order): rows ``(post_id)``; the fallback that keeps a
    recommendation list from ever being empty while anyone posts."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id AS post_id FROM posts WHERE id > $1 ORDER BY id DESC LIMIT $2", floor_id, limit
    )
    return rows


async def facts(conn: Any, user_id: int, post_ids: Sequence[int]) -> list[asyncpg.Record]:
    """What the ranking needs of each candidate: author, time, engagement, its interests, and whether the caller
    already reacted to it, gave feedback on it, or has it in their timeline (they follow its author or someone
    who reposted it). Gone posts have no row."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT p.id, p.author_id, p.created_at, {ENGAGEMENT} AS engagement,
                   ARRAY(SELECT pi.slug FROM post_interests pi WHERE pi.post_id = p.id) AS slugs,
                   EXISTS (SELECT 1 FROM post_reactions r WHERE r.post_id = p.id AND r.user_id = $2) AS reacted,
                   EXISTS (SELECT 1 FROM explore_feedback fb WHERE fb.user_id = $2 AND fb.post_id = p.id)
                       AS judged,
                   (EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = $2 AND f.followee_id = p.author_id)
                    OR EXISTS (SELECT 1 FROM reposts rp JOIN follows f ON f.followee_id = rp.user_id
                               WHERE rp.post_id = p.id AND f.follower_id = $2)) AS in_timeline
            FROM posts p WHERE p.id = ANY($1::bigint[])""",
        list(post_ids),
        user_id,
    )
    return rows


# ------------------------------------------------------------ feedback and knobs


async def save_feedback(
    conn: asyncpg.Connection, user_id: int, post_id: int, author_id: int, slugs: Sequence[str], signal: int
) -> None:
    await conn.execute(
        """INSERT INTO explore_feedback (user_id, post_id, author_id, slugs, signal) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (user_id, post_id) DO UPDATE
           SET signal = EXCLUDED.signal, slugs = EXCLUDED.slugs, created_at = now()""",
        user_id,
        post_id,
        author_id,
        list(slugs),
        signal,
    )


async def feedback_totals(conn: Any, user_id: int, limit: int) -> tuple[dict[int, int], dict[str, int]]:
    """The caller's net feedback (sum of +1 / -1 over the latest ``limit`` signals) per author and per interest."""
    rows = await conn.fetch(
        """SELECT author_id, slugs, signal FROM explore_feedback WHERE user_id = $1
           ORDER BY created_at DESC LIMIT $2""",
        user_id,
        limit,
    )
    authors: dict[int, int] = {}
    interests: dict[str, int] = {}
    for row in rows:
        signal = int(row["signal"])
        authors[int(row["author_id"])] = authors.get(int(row["author_id"]), 0) + signal
        for slug in row["slugs"]:
            interests[slug] = interests.get(slug, 0) + signal
    return authors, interests


async def get_knobs(conn: Any, user_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT recency_weight, hide_reposts, per_author_cap FROM recommendation_settings WHERE user_id = $1",
        user_id,
    )
    return row


async def put_knobs(
    conn: asyncpg.Connection, user_id: int, recency_weight: float, hide_reposts: bool, cap: int
) -> None:
    await conn.execute(
        """INSERT INTO recommendation_settings (user_id, recency_weight, hide_reposts, per_author_cap)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (user_id) DO UPDATE SET recency_weight = EXCLUDED.recency_weight,
               hide_reposts = EXCLUDED.hide_reposts, per_author_cap = EXCLUDED.per_author_cap, updated_at = now()""",
        user_id,
        recency_weight,
        hide_reposts,
        cap,
    )


# ------------------------------------------------------------ the precomputed tables


_TRENDING = """
WITH ev AS (
    SELECT r.post_id, 1.0 AS w, r.created_at FROM post_reactions r WHERE r.created_at > now() - interval '24 hours'
    UNION ALL
    SELECT c.post_id, 2.0, c.created_at FROM comments c WHERE c.id > $1
    UNION ALL
    SELECT rp.post_id, 3.0, rp.created_at FROM reposts rp WHERE rp.id > $1
)
INSERT INTO trending_posts (post_id, author_id, score)
SELECT ev.post_id, p.author_id,
       sum(ev.w * power(0.5, greatest(extract(epoch FROM now() - ev.created_at), 0) / $2)) AS score
FROM ev JOIN posts p ON p.id = ev.post_id
GROUP BY ev.post_id, p.author_id ORDER BY score DESC LIMIT $3
"""

_TOP_POSTS = f"""
INSERT INTO interest_top_posts (slug, post_id, author_id, score)
SELECT slug, post_id, author_id, score FROM (
    SELECT x.slug, x.post_id, x.author_id, x.score,
           row_number() OVER (PARTITION BY x.slug ORDER BY x.score DESC, x.post_id DESC) AS rank
    FROM (
        SELECT pi.slug, pi.post_id, pi.author_id,
               ln(1 + {ENGAGEMENT}) / (1 + extract(epoch FROM now() - p.created_at) / 86400) AS score
        FROM post_interests pi JOIN posts p ON p.id = pi.post_id
        WHERE pi.post_id > $1
    ) x WHERE x.score > 0
) ranked WHERE rank <= $2
"""

_TOP_AUTHORS = """
INSERT INTO interest_top_authors (slug, user_id, score)
SELECT slug, author_id, score FROM (
    SELECT x.slug, x.author_id, x.score,
           row_number() OVER (PARTITION BY x.slug ORDER BY x.score DESC, x.author_id) AS rank
    FROM (
        SELECT pi.slug, pi.author_id, ln(2 + count(*)) * ln(2 + max(u.followers_count)) AS score
        FROM post_interests pi JOIN users u ON u.id = pi.author_id
        WHERE pi.post_id > $1
        GROUP BY pi.slug, pi.author_id
    ) x
) ranked WHERE rank <= $2
"""


async def refresh(
    pool: asyncpg.Pool,
    *,
    every_s: float,
    day_floor_id: int,
    week_floor_id: int,
    month_floor_id: int,
    half_life_s: float,
    keep: int,
) -> bool:
    """Recompute the precomputed tables in one transaction, unless another process did so in the last
    ``every_s`` seconds (or is doing it now: an advisory lock). True when this call refreshed them."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext('i9lyfe.recs_refresh'))"):
            return False
        fresh = await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM recs_refreshed
                              WHERE name = 'recs' AND at > now() - make_interval(secs => $1))""",
            every_s,
        )
        if fresh:
            return False
        await conn.execute("DELETE FROM trending_posts")
        await conn.execute(_TRENDING, day_floor_id, half_life_s, keep)
        await conn.execute("DELETE FROM interest_top_posts")
        await conn.execute(_TOP_POSTS, week_floor_id, keep)
        await conn.execute("DELETE FROM interest_top_authors")
        await conn.execute(_TOP_AUTHORS, month_floor_id, keep)
        await conn.execute(
            """INSERT INTO recs_refreshed (name, at) VALUES ('recs', now())
               ON CONFLICT (name) DO UPDATE SET at = now()"""
        )
    return True
