"""Explore's SQL (issue 14): the candidates (one statement) and their facts (another), feedback, knobs, and the
refresh of the small precomputed tables (trending, each interest's top posts and authors).

Every candidate source walks an index from a small, bounded start (the caller's followed interests, followees,
recent reactions) with a LIMIT per step; none scans posts or users. Functions take a connection and never
commit, except ``refresh``, which owns its transaction.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from storage import db, ids
from storage.ids import EPOCH_MS

# ENGAGEMENT of a post: reactions + 2 x comments + 3 x reposts (as search ranks), summed over the counter shards.
ENGAGEMENT = """coalesce((SELECT sum(CASE c.counter WHEN 'reactions' THEN c.n WHEN 'comments' THEN 2 * c.n
                                          ELSE 3 * c.n END)
                          FROM post_counts c WHERE c.post_id = p.id
                            AND c.counter IN ('reactions', 'comments', 'reposts')), 0)"""


@dataclass(frozen=True)
class Limits:
    """How much each source may bring (its LIMITs) and how far back it looks (seconds). Constants: they are written
    into the statement's text (``candidates_statement``), so that one plan made per connection fits every call."""

    per_slug: int  # each followed interest's newest posts, and as many of its precomputed top posts
    interest_s: float  # ... made within this long
    followees: int  # the people the caller follows most recently whose reactions and comments count
    per_followee: int  # the latest reactions (and comments) of each, within ``engaged_s``
    engaged_s: float
    engaged: int
    mine: int  # the caller's latest reactions, whose other reactors are the caller's peers
    per_post: int  # other reactors taken of each of those posts
    peers: int  # the peers with most in common
    per_peer: int  # the latest reactions of each peer, within ``similar_s``
    similar_s: float
    similar: int
    trending: int
    recent_s: float  # the newest posts of all, made within this long
    recent: int
    shortlist: int  # candidates returned (the most relevant by their sources), with their facts


@dataclass(frozen=True)
class Weights:
    """The parts of relevance each source gives (domain/ranking.py), for the shortlist."""

    interest: float
    engaged: float
    similar: float
    trending: float
    recent: float


# What a ranking was made from besides the rows that ``changed_since`` looks for by time: counts that fall when
# a row is deleted (an unfollow, an interest unfollowed) and when the precomputed tables last changed contents.
STAMP = """(SELECT following_count FROM users WHERE id = $1) AS stamp_following,
       (SELECT count(*) FROM interest_follows WHERE user_id = $1) AS stamp_interests,
       (SELECT extract(epoch FROM changed_at)::float8 FROM recs_refreshed WHERE name = 'recs') AS stamp_refreshed"""

# Every source at once, merged per post, cut to the ``shortlist`` most relevant by what the sources say (best
# first, with that relevance). Sources (each walks an index from a small start with a LIMIT per step):
#   interest: each followed interest's newest posts and its precomputed top ones;
#   engaged: posts the caller's followees reacted to or commented on lately (who);
#   alike: what the caller's peers reacted to lately: peers are those who reacted to the caller's latest
#            reactions, a post in common counting 1 / ln(2 + its reactions) (niche beats viral);
#   trending: the precomputed trending posts; recent: the newest posts of all.
# The facts the ranking needs are read apart (``_FACTS``), for as many of these as a ranking's stage takes
# (api/reads/explore.py): a first page needs the facts of the most relevant few, not of the whole shortlist.
# Parameters: $1 the caller, $2 and $3 the post id floors of the interest and recent sources (ids are time-ordered);
# every LIMIT, window and weight is written into the text (``candidates_statement``): with them known, the plan
# made once per connection (the explorer's pool, storage/db.py GENERIC_SETTINGS) is the one a plan for each call
# would be, and saves the ~1 ms of planning each call (measured on 1M posts: 5.4 ms a call against 6.7 ms).
_CANDIDATES = """
WITH slugs AS (SELECT slug FROM interest_follows WHERE user_id = $1),
interest AS (
    SELECT DISTINCT x.post_id FROM slugs CROSS JOIN LATERAL (
        (SELECT pi.post_id FROM post_interests pi
         WHERE pi.slug = slugs.slug AND pi.post_id > $2 ORDER BY pi.post_id DESC LIMIT {per_slug})
        UNION
        (SELECT t.post_id FROM interest_top_posts t WHERE t.slug = slugs.slug
         ORDER BY t.score DESC LIMIT {per_slug})) x),
f AS (SELECT followee_id FROM follows WHERE follower_id = $1 ORDER BY created_at DESC LIMIT {followees}),
engaged AS (
    SELECT e.post_id, array_agg(DISTINCT e.user_id) AS users FROM f CROSS JOIN LATERAL (
        (SELECT r.post_id, r.user_id FROM post_reactions r
         WHERE r.user_id = f.followee_id AND r.created_at > now() - interval '{engaged_s} seconds'
         ORDER BY r.created_at DESC LIMIT {per_followee})
        UNION ALL
        (SELECT c.post_id, c.author_id FROM comments c
         WHERE c.author_id = f.followee_id AND c.created_at > now() - interval '{engaged_s} seconds'
         ORDER BY c.created_at DESC LIMIT {per_followee})) e
    GROUP BY e.post_id ORDER BY count(DISTINCT e.user_id) DESC, e.post_id DESC LIMIT {engaged}),
mine AS (
    SELECT r.post_id, 1.0 / ln(2 + coalesce((SELECT sum(c.n) FROM post_counts c
                                             WHERE c.post_id = r.post_id AND c.counter = 'reactions'), 0)) AS w
    FROM post_reactions r WHERE r.user_id = $1 ORDER BY r.created_at DESC LIMIT {mine}),
peers AS (
    SELECT o.user_id, sum(mine.w) AS common FROM mine CROSS JOIN LATERAL (
        SELECT r.user_id FROM post_reactions r WHERE r.post_id = mine.post_id AND r.user_id <> $1
        ORDER BY r.created_at DESC LIMIT {per_post}) o
    GROUP BY o.user_id ORDER BY common DESC, o.user_id LIMIT {peers}),
alike AS (
    SELECT t.post_id, count(*) AS n, sum(peers.common)::float8 AS weight FROM peers CROSS JOIN LATERAL (
        SELECT r.post_id FROM post_reactions r
        WHERE r.user_id = peers.user_id AND r.created_at > now() - interval '{similar_s} seconds'
        ORDER BY r.created_at DESC LIMIT {per_peer}) t
    GROUP BY t.post_id ORDER BY weight DESC, t.post_id DESC LIMIT {similar}),
trend AS (SELECT post_id, score::float8 AS score FROM trending_posts
          ORDER BY score DESC, post_id DESC LIMIT {trending}),
recent AS (SELECT id AS post_id FROM posts WHERE id > $3 ORDER BY id DESC LIMIT {recent}),
top_trend AS (SELECT coalesce(nullif(max(score), 0), 1) AS top FROM trend),
cand AS (
    SELECT post_id FROM interest UNION SELECT post_id FROM engaged UNION SELECT post_id FROM alike
    UNION SELECT post_id FROM trend UNION SELECT post_id FROM recent),
scored AS (
    SELECT c.post_id, i.post_id IS NOT NULL AS by_interest, e.users, coalesce(s.n, 0) AS similar_n,
           coalesce(s.weight, 0) AS similar_weight, coalesce(t.score, 0) / (SELECT top FROM top_trend) AS trend,
           r.post_id IS NOT NULL AS recent,
           CASE WHEN i.post_id IS NULL THEN 0 ELSE {w_interest}::float8 END
           + coalesce(cardinality(e.users), 0) * {w_engaged}::float8 + coalesce(s.weight, 0) * {w_similar}::float8
           + coalesce(t.score, 0) / (SELECT top FROM top_trend) * {w_trending}::float8
           + CASE WHEN r.post_id IS NULL THEN 0 ELSE {w_recent}::float8 END AS relevance
    FROM cand c LEFT JOIN interest i ON i.post_id = c.post_id LEFT JOIN engaged e ON e.post_id = c.post_id
    LEFT JOIN alike s ON s.post_id = c.post_id LEFT JOIN trend t ON t.post_id = c.post_id
    LEFT JOIN recent r ON r.post_id = c.post_id
    ORDER BY relevance DESC, c.post_id DESC
    LIMIT {shortlist})
SELECT sc.*, {stamp} FROM scored sc ORDER BY sc.relevance DESC, sc.post_id DESC
"""

# The facts of posts $2 (the candidates a ranking's stage takes) for the caller $1: author, time, engagement
# (reactions + 2 x comments + 3 x reposts), the post's interests and those the caller follows, and whether the caller
# reacted to it, gave feedback on it, or has it in their timeline (follows its author or someone who reposted it).
# Posts gone since are not answered.
_FACTS = f"""
WITH slugs AS (SELECT slug FROM interest_follows WHERE user_id = $1)
SELECT p.id AS post_id, p.author_id, p.created_at, {ENGAGEMENT} AS engagement,
       ARRAY(SELECT pi.slug FROM post_interests pi WHERE pi.post_id = p.id ORDER BY pi.slug) AS slugs,
       ARRAY(SELECT pi.slug FROM post_interests pi JOIN slugs ON slugs.slug = pi.slug
             WHERE pi.post_id = p.id ORDER BY pi.slug) AS followed_slugs,
       EXISTS (SELECT 1 FROM post_reactions r WHERE r.post_id = p.id AND r.user_id = $1) AS reacted,
       EXISTS (SELECT 1 FROM explore_feedback fb WHERE fb.user_id = $1 AND fb.post_id = p.id) AS judged,
       (EXISTS (SELECT 1 FROM follows x WHERE x.follower_id = $1 AND x.followee_id = p.author_id)
        OR EXISTS (SELECT 1 FROM reposts rp JOIN follows x ON x.followee_id = rp.user_id
                   WHERE rp.post_id = p.id AND x.follower_id = $1)) AS in_timeline
FROM posts p WHERE p.id = ANY($2::bigint[])
"""

# Whether anything a ranking of the caller was made from changed after $2 (a time) / post id $3: the caller's own
# follows, followed interests, feedback, knobs and reactions; a new post in an interest the caller follows; a
# reaction, comment or repost by one of the $4 people the caller follows most recently (the engaged source's
# reach; a repost also puts its post in the caller's timeline). With the stamp (above), which the caller compares.
# Each is an index probe from the caller or a followee; none scans.
_CHANGED = f"""
SELECT {STAMP},
       EXISTS (SELECT 1 FROM follows WHERE follower_id = $1 AND created_at > $2)
       OR EXISTS (SELECT 1 FROM interest_follows WHERE user_id = $1 AND created_at > $2)
       OR EXISTS (SELECT 1 FROM explore_feedback WHERE user_id = $1 AND created_at > $2)
       OR EXISTS (SELECT 1 FROM recommendation_settings WHERE user_id = $1 AND updated_at > $2)
       OR EXISTS (SELECT 1 FROM post_reactions WHERE user_id = $1 AND created_at > $2)
       OR EXISTS (SELECT 1 FROM interest_follows s JOIN post_interests pi ON pi.slug = s.slug AND pi.post_id > $3
                  WHERE s.user_id = $1)
       OR EXISTS (SELECT 1 FROM (SELECT followee_id FROM follows WHERE follower_id = $1
                                 ORDER BY created_at DESC LIMIT $4) f
                  WHERE EXISTS (SELECT 1 FROM post_reactions r WHERE r.user_id = f.followee_id AND r.created_at > $2)
                     OR EXISTS (SELECT 1 FROM comments c WHERE c.author_id = f.followee_id AND c.created_at > $2)
                     OR EXISTS (SELECT 1 FROM reposts rp WHERE rp.user_id = f.followee_id AND rp.created_at > $2))
       AS changed
"""


@functools.lru_cache(maxsize=8)
def candidates_statement(limits: Limits, weights: Weights) -> str:
    """The candidates statement with these limits and weights in its text (see above)."""
    return _CANDIDATES.format(**db.literals("", limits), **db.literals("w_", weights), stamp=STAMP)


async def candidates(conn: Any, user_id: int, limits: Limits, weights: Weights) -> list[asyncpg.Record]:
    """The caller's shortlisted candidates from every source, most relevant first, with what each source said and
    the caller's stamp (one round trip; see above). Their facts: ``facts``."""
    now_ms = int(time.time() * 1000)
    rows: list[asyncpg.Record] = await conn.fetch(
        candidates_statement(limits, weights),
        user_id,
        ids.min_id_at(now_ms - int(limits.interest_s * 1000)),
        ids.min_id_at(now_ms - int(limits.recent_s * 1000)),
    )
    return rows


async def facts(conn: Any, user_id: int, post_ids: Sequence[int]) -> dict[int, asyncpg.Record]:
    """The facts of these posts for the caller, by post id (those gone are left out; one round trip)."""
    if not post_ids:
        return {}
    rows = await conn.fetch(_FACTS, user_id, list(post_ids))
    return {int(row["post_id"]): row for row in rows}


Stamp = tuple[int, int, float | None]  # following count, followed interests, last refresh (epoch s)


def stamp_of(row: Any) -> Stamp:
    """The stamp columns of a ``candidates`` or ``changed_since`` row."""
    refreshed = row["stamp_refreshed"]
    return int(row["stamp_following"]), int(row["stamp_interests"]), None if refreshed is None else float(refreshed)


async def changed_since(
    conn: Any, user_id: int, since: dt.datetime, floor_id: int, followees: int
) -> tuple[Stamp, bool]:
    """The caller's stamp now, and whether something a ranking made at ``since`` came from changed after it."""
    row = await conn.fetchrow(_CHANGED, user_id, since, floor_id, followees)
    return stamp_of(row), bool(row["changed"])


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
    return _totals(rows)


def _totals(rows: Sequence[Any]) -> tuple[dict[int, int], dict[str, int]]:
    authors: dict[int, int] = {}
    interests: dict[str, int] = {}
    for row in rows:
        signal = int(row["signal"])
        authors[int(row["author_id"])] = authors.get(int(row["author_id"]), 0) + signal
        for slug in row["slugs"]:
            interests[slug] = interests.get(slug, 0) + signal
    return authors, interests


async def knobs_and_feedback(
    conn: Any, user_id: int, limit: int
) -> tuple[asyncpg.Record | None, dict[int, int], dict[str, int]]:
    """The caller's knobs (None: the defaults) and ``feedback_totals``, in one round trip."""
    rows = await conn.fetch(
        """SELECT k.recency_weight, k.hide_reposts, k.per_author_cap, f.author_id, f.slugs, f.signal
           FROM (SELECT 1) one
           LEFT JOIN recommendation_settings k ON k.user_id = $1
           LEFT JOIN LATERAL (SELECT author_id, slugs, signal FROM explore_feedback WHERE user_id = $1
                              ORDER BY created_at DESC LIMIT $2) f ON true""",
        user_id,
        limit,
    )
    knobs = rows[0] if rows and rows[0]["recency_weight"] is not None else None
    authors, interests = _totals([row for row in rows if row["signal"] is not None])
    return knobs, authors, interests


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


# The engagement of the posts made after id $1 (ids are time-ordered: a range of post_counts' primary key, no
# scan of posts), with their age in hours (from the id's time, storage/ids.py).
_RECENT_ENGAGEMENT = f"""
SELECT c.post_id,
       sum(CASE c.counter WHEN 'reactions' THEN c.n WHEN 'comments' THEN 2 * c.n ELSE 3 * c.n END) AS e,
       greatest(extract(epoch FROM now()) * 1000 - ((c.post_id >> 22) + {EPOCH_MS}), 0) / 3600000.0 AS age_h
FROM post_counts c WHERE c.post_id > $1 AND c.counter IN ('reactions', 'comments', 'reposts')
GROUP BY c.post_id
"""

# Trending: posts of the last 24 h by time-decayed engagement, engagement / (age hours + 2)^1.5.
_TRENDING = f"""
INSERT INTO trending_posts (post_id, author_id, score)
SELECT r.post_id, p.author_id, r.e / power(r.age_h + 2, 1.5) AS score
FROM ({_RECENT_ENGAGEMENT}) r JOIN posts p ON p.id = r.post_id
WHERE r.e > 0 ORDER BY score DESC, r.post_id DESC LIMIT $2
"""

# Each interest's most engaging posts of the last week: ln(1 + engagement) / (1 + age in days).
_TOP_POSTS = f"""
INSERT INTO interest_top_posts (slug, post_id, author_id, score)
SELECT slug, post_id, author_id, score FROM (
    SELECT pi.slug, pi.post_id, pi.author_id, ln(1 + r.e) / (1 + r.age_h / 24) AS score,
           row_number() OVER (PARTITION BY pi.slug ORDER BY ln(1 + r.e) / (1 + r.age_h / 24) DESC, pi.post_id DESC)
               AS rank
    FROM ({_RECENT_ENGAGEMENT}) r JOIN post_interests pi ON pi.post_id = r.post_id
    WHERE r.e > 0
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


# What the precomputed tables hold (which posts and authors, not their scores), to tell whether a refresh changed it.
_CONTENTS = """
SELECT md5(coalesce((SELECT string_agg(post_id::text, ',' ORDER BY post_id) FROM trending_posts), '') || '|'
           || coalesce((SELECT string_agg(slug || ':' || post_id, ',' ORDER BY slug, post_id)
                        FROM interest_top_posts), '') || '|'
           || coalesce((SELECT string_agg(slug || ':' || user_id, ',' ORDER BY slug, user_id)
                        FROM interest_top_authors), ''))
"""


async def refresh(
    pool: asyncpg.Pool,
    *,
    every_s: float,
    day_floor_id: int,
    week_floor_id: int,
    month_floor_id: int,
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
        before = await conn.fetchval(_CONTENTS)
        await conn.execute("DELETE FROM trending_posts")
        await conn.execute(_TRENDING, day_floor_id, keep)
        await conn.execute("DELETE FROM interest_top_posts")
        await conn.execute(_TOP_POSTS, week_floor_id, keep)
        await conn.execute("DELETE FROM interest_top_authors")
        await conn.execute(_TOP_AUTHORS, month_floor_id, keep)
        changed = await conn.fetchval(_CONTENTS) != before
        await conn.execute(
            """INSERT INTO recs_refreshed (name, at, changed_at) VALUES ('recs', now(), now())
               ON CONFLICT (name) DO UPDATE
               SET at = now(), changed_at = CASE WHEN $1 THEN now() ELSE recs_refreshed.changed_at END""",
            changed,
        )
    return True
