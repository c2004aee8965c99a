"""The graph store (DESIGN.md 6): follows in PostgreSQL, indexed in both directions.

Every graph query of the app sits here, behind this small interface (followers and followees pages, mutual
follows, the viewer's flags for a page of users), so that another store can answer them without touching
callers. Functions take a connection and never commit. The follow counters on ``users`` change in the same
statement sequence as the row they count (``add_follow`` / ``remove_follow``), in the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import asyncpg

from storage import db
from storage.users import USER_COLUMNS

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
# A keyset position in a follow list: (created_at, user id) of the last row seen, newest first.
Position: TypeAlias = tuple[dt.datetime, int]

_SUMMARY = ", ".join(f"u.{c.strip()}" for c in USER_COLUMNS.split(","))


async def _bump(conn: asyncpg.Connection, follower_id: int, followee_id: int, delta: int) -> None:
    """Both counters, shared rows (storage/db.py ``add_to_counters``: locked in id order, at the end of a group
    commit: two opposite follows never deadlock, a popular followee never holds up a batch)."""
    await db.add_to_counters(
        conn, "users", [(follower_id, "following_count", delta), (followee_id, "followers_count", delta)]
    )


async def add_follow(conn: asyncpg.Connection, follower_id: int, followee_id: int) -> dt.datetime | None:
    """Insert the follow and bump both counters; None (and nothing changed) when it already existed."""
    created: dt.datetime | None = await conn.fetchval(
        """INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2)
           ON CONFLICT (follower_id, followee_id) DO NOTHING RETURNING created_at""",
        follower_id,
        followee_id,
    )
    if created is not None:
        await _bump(conn, follower_id, followee_id, 1)
    return created


async def remove_follow(conn: asyncpg.Connection, follower_id: int, followee_id: int) -> bool:
    """Delete the follow and lower both counters; False (and nothing changed) when there was none."""
    status: str = await conn.execute(
        "DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2", follower_id, followee_id
    )
    removed = status != "DELETE 0"
    if removed:
        await _bump(conn, follower_id, followee_id, -1)
    return removed


async def is_following(conn: Conn, follower_id: int, followee_id: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM follows WHERE follower_id = $1 AND followee_id = $2)",
            follower_id,
            followee_id,
        )
    )


async def followers_page(conn: Conn, user_id: int, limit: int, after: Position | None = None) -> list[asyncpg.Record]:
    """Those who follow ``user_id``, newest follow first: user rows plus ``followed_at``."""
    return await _page(conn, "followee_id", "follower_id", user_id, limit, after)


async def following_page(conn: Conn, user_id: int, limit: int, after: Position | None = None) -> list[asyncpg.Record]:
    """Those ``user_id`` follows, newest follow first: user rows plus ``followed_at``."""
    return await _page(conn, "follower_id", "followee_id", user_id, limit, after)


async def _page(
    conn: Conn, own: str, other: str, user_id: int, limit: int, after: Position | None
) -> list[asyncpg.Record]:
    # ``own`` / ``other`` are column names from this module, never from a caller.
    keyset = f"AND (f.created_at, f.{other}) < ($3, $4)" if after is not None else ""
    args: list[object] = [user_id, limit, *(after or ())]
    return list(
        await conn.fetch(
            f"""SELECT {_SUMMARY}, f.created_at AS followed_at
                FROM follows f JOIN users u ON u.id = f.{other}
                WHERE f.{own} = $1 {keyset}
                ORDER BY f.created_at DESC, f.{other} DESC
                LIMIT $2""",
            *args,
        )
    )


async def viewer_flags(conn: Conn, viewer_id: int, user_ids: Sequence[int]) -> dict[int, tuple[bool, bool]]:
    """For a page of users, in one query: user id -> (followed_by_me, follows_me) for ``viewer_id``."""
    if not user_ids:
        return {}
    rows = await conn.fetch(
        """SELECT t.id,
                  EXISTS (SELECT 1 FROM follows WHERE follower_id = $1 AND followee_id = t.id) AS followed_by_me,
                  EXISTS (SELECT 1 FROM follows WHERE follower_id = t.id AND followee_id = $1) AS follows_me
           FROM unnest($2::bigint[]) AS t(id)""",
        viewer_id,
        list(user_ids),
    )
    return {int(r["id"]): (bool(r["followed_by_me"]), bool(r["follows_me"])) for r in rows}


async def users_with_flags(conn: Conn, viewer_id: int, user_ids: Sequence[int]) -> list[asyncpg.Record]:
    """The rows of these users (missing ones are left out), each with ``followed_by_me`` and ``follows_me`` for
    ``viewer_id``: ``get_users`` and ``viewer_flags`` in one query."""
    rows = await conn.fetch(
        f"""SELECT {USER_COLUMNS},
                   EXISTS (SELECT 1 FROM follows WHERE follower_id = $1 AND followee_id = users.id) AS followed_by_me,
                   EXISTS (SELECT 1 FROM follows WHERE follower_id = users.id AND followee_id = $1) AS follows_me
            FROM users WHERE id = ANY($2::bigint[])""",
        viewer_id,
        list(user_ids),
    )
    return list(rows)


async def mutual_follows(conn: Conn, user_id: int, limit: int = 100) -> list[int]:
    """Users who follow ``user_id`` and are followed back, newest follow first."""
    rows = await conn.fetch(
        """SELECT f.follower_id FROM follows f
           JOIN follows back ON back.follower_id = f.followee_id AND back.followee_id = f.follower_id
           WHERE f.followee_id = $1
           ORDER BY f.created_at DESC, f.follower_id DESC LIMIT $2""",
        user_id,
        limit,
    )
    return [int(r["follower_id"]) for r in rows]


async def counts(conn: Conn, user_id: int) -> tuple[int, int]:
    """(followers, following) counted from the rows: what the counters on ``users`` must equal."""
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM follows WHERE followee_id = $1) AS followers,
                  (SELECT count(*) FROM follows WHERE follower_id = $1) AS following""",
        user_id,
    )
    assert row is not None
    return int(row["followers"]), int(row["following"])


# ------------------------------------------------------------ who to follow (issue 14)

# What a user's suggestions were made from besides the rows that ``suggestions_changed_since`` looks for by time:
# counts that fall when a row is deleted (an unfollow by or of the user, an interest unfollowed) and when the
# precomputed tables (each interest's top authors) last changed contents.
SUGGESTION_STAMP = """(SELECT following_count FROM users WHERE id = $1) AS stamp_following,
       (SELECT followers_count FROM users WHERE id = $1) AS stamp_followers,
       (SELECT count(*) FROM interest_follows WHERE user_id = $1) AS stamp_interests,
       (SELECT extract(epoch FROM changed_at)::float8 FROM recs_refreshed WHERE name = 'recs') AS stamp_refreshed"""

# Candidate people for a user from every source, merged per person and scored, in one round trip. Each source
# starts from a small, bounded set (the user's latest {start} follows, followers, interests, reactions) and walks
# an index with a LIMIT per step ({per_step}) and per source ({per_source}; the two that are the same for many
# users, popular in my interests and popular, {per_topical} and {per_popular}: fewer rows to merge, measured
# without a loss of precision or recall); none scans users or follows. Per
# person: each source's strength ``n`` (mutual follows, people in common, engagements, shared interests,
# followers), ``via`` (up to 3 people who make the link) and ``slugs``, each source's part of the score (the
# weights) and the score. Parameters: $1 the user, $2 how many. The sizes and weights are written into the text
# (``suggestions_statement``), so the plan made once per connection (storage/db.py GENERIC_SETTINGS) is the one
# a plan for each call would be (measured on 100k users: 2.3 ms a call against 3.3 ms planned each time).
_SUGGESTION_SOURCES = """
WITH mine AS (SELECT followee_id AS id, created_at FROM follows WHERE follower_id = $1
              ORDER BY created_at DESC LIMIT {start}),
fof AS (
    SELECT f.followee_id AS user_id, count(*) AS n,
           (array_agg(f.follower_id ORDER BY f.created_at DESC))[1:3] AS via
    FROM mine CROSS JOIN LATERAL (
        SELECT x.follower_id, x.followee_id, x.created_at FROM follows x
        WHERE x.follower_id = mine.id ORDER BY x.created_at DESC LIMIT {per_step}) f
    GROUP BY f.followee_id ORDER BY n DESC LIMIT {per_source}),
same AS (
    SELECT f.follower_id AS user_id, count(*) AS n,
           (array_agg(f.followee_id ORDER BY f.created_at DESC))[1:3] AS via
    FROM mine CROSS JOIN LATERAL (
        SELECT x.follower_id, x.followee_id, x.created_at FROM follows x
        WHERE x.followee_id = mine.id ORDER BY x.created_at DESC LIMIT {per_step}) f
    GROUP BY f.follower_id ORDER BY n DESC LIMIT {per_source}),
fans AS (
    SELECT x.follower_id AS user_id FROM follows x WHERE x.followee_id = $1
    ORDER BY x.created_at DESC LIMIT {per_source}),
shared AS (
    SELECT o.user_id, count(*) AS n, array_agg(o.slug ORDER BY o.slug) AS slugs
    FROM (SELECT slug FROM interest_follows WHERE user_id = $1) s CROSS JOIN LATERAL (
        SELECT i.user_id, i.slug FROM interest_follows i WHERE i.slug = s.slug AND i.user_id <> $1
        ORDER BY i.created_at DESC LIMIT {per_step}) o
    GROUP BY o.user_id ORDER BY n DESC LIMIT {per_source}),
engaged AS (
    SELECT p.author_id AS user_id, count(*) AS n
    FROM ((SELECT post_id FROM post_reactions WHERE user_id = $1 ORDER BY created_at DESC LIMIT {per_step})
          UNION ALL
          (SELECT post_id FROM comments WHERE author_id = $1 ORDER BY created_at DESC LIMIT {per_step})) e
    JOIN posts p ON p.id = e.post_id
    GROUP BY p.author_id ORDER BY n DESC LIMIT {per_source}),
topical AS (
    SELECT t.user_id, count(*) AS n, array_agg(t.slug ORDER BY t.score DESC) AS slugs
    FROM interest_follows m JOIN interest_top_authors t ON t.slug = m.slug
    WHERE m.user_id = $1 GROUP BY t.user_id ORDER BY max(t.score) DESC LIMIT {per_topical}),
popular AS (
    SELECT u.id AS user_id, u.followers_count AS n FROM users u
    WHERE u.followers_count > 0 ORDER BY u.followers_count DESC LIMIT {per_popular}),
cand AS (
    SELECT 'fof' AS source, user_id, n, via, NULL::text[] AS slugs FROM fof
    UNION ALL SELECT 'same', user_id, n, via, NULL FROM same
    UNION ALL SELECT 'fans', user_id, 1, NULL, NULL FROM fans
    UNION ALL SELECT 'shared', user_id, n, NULL, slugs FROM shared
    UNION ALL SELECT 'engaged', user_id, n, NULL, NULL FROM engaged
    UNION ALL SELECT 'topical', user_id, n, NULL, slugs FROM topical
    UNION ALL SELECT 'popular', user_id, n, NULL, NULL FROM popular),
per_user AS (
    SELECT c.user_id,
           max(c.n) FILTER (WHERE c.source = 'fof') AS fof_n, max(c.via) FILTER (WHERE c.source = 'fof') AS fof_via,
           bool_or(c.source = 'fans') AS fan,
           max(c.n) FILTER (WHERE c.source = 'engaged') AS engaged_n,
           max(c.n) FILTER (WHERE c.source = 'same') AS same_n,
           max(c.via) FILTER (WHERE c.source = 'same') AS same_via,
           max(c.n) FILTER (WHERE c.source = 'shared') AS shared_n,
           max(c.slugs) FILTER (WHERE c.source = 'shared') AS shared_slugs,
           max(c.slugs) FILTER (WHERE c.source = 'topical') AS topical_slugs,
           max(c.n) FILTER (WHERE c.source = 'popular') AS followers
    FROM cand c
    WHERE c.user_id <> $1
      AND NOT EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = $1 AND f.followee_id = c.user_id)
    GROUP BY c.user_id),
parts AS (
    SELECT p.*,
           coalesce({w_fof}::float8 * ln(1 + p.fof_n), 0) AS fof_part,
           CASE WHEN p.fan THEN {w_fan}::float8 ELSE 0 END AS fan_part,
           coalesce({w_engaged}::float8 * ln(1 + p.engaged_n), 0) AS engaged_part,
           coalesce({w_same}::float8 * ln(1 + p.same_n), 0) AS same_part,
           coalesce({w_shared}::float8 * p.shared_n, 0) AS shared_part,
           CASE WHEN p.topical_slugs IS NULL THEN 0 ELSE {w_topical}::float8 END AS topical_part,
           coalesce({w_popular}::float8 * ln(1 + p.followers) / nullif(ln(1 + max(p.followers) OVER ()), 0), 0)
               AS popular_part
    FROM per_user p)
SELECT parts.*, (fof_part + fan_part + engaged_part + same_part + shared_part + topical_part + popular_part)::float8
       AS score, {stamp}
FROM parts ORDER BY score DESC, user_id LIMIT $2
"""


# Whether anything a user's suggestions were made from changed after $2 (a time): the user's follows, followers,
# interests, reactions and comments; someone else following one of the user's interests; and a follow by or of one
# of the $3 people the user follows most recently (the friends-of-friends and similar-follows sources' reach). With
# the stamp (above). Each is an index probe from the user, a followee or an interest; none scans.
_SUGGESTIONS_CHANGED = f"""
SELECT {SUGGESTION_STAMP},
       EXISTS (SELECT 1 FROM follows WHERE follower_id = $1 AND created_at > $2)
       OR EXISTS (SELECT 1 FROM follows WHERE followee_id = $1 AND created_at > $2)
       OR EXISTS (SELECT 1 FROM interest_follows WHERE user_id = $1 AND created_at > $2)
       OR EXISTS (SELECT 1 FROM post_reactions WHERE user_id = $1 AND created_at > $2)
       OR EXISTS (SELECT 1 FROM comments WHERE author_id = $1 AND created_at > $2)
       OR EXISTS (SELECT 1 FROM interest_follows s JOIN interest_follows o ON o.slug = s.slug AND o.created_at > $2
                  WHERE s.user_id = $1 AND o.user_id <> $1)
       OR EXISTS (SELECT 1 FROM (SELECT followee_id FROM follows WHERE follower_id = $1
                                 ORDER BY created_at DESC LIMIT $3) m
                  WHERE EXISTS (SELECT 1 FROM follows x WHERE x.follower_id = m.followee_id AND x.created_at > $2)
                     OR EXISTS (SELECT 1 FROM follows x WHERE x.followee_id = m.followee_id AND x.created_at > $2))
       AS changed
"""

SuggestionStamp: TypeAlias = tuple[int, int, int, float | None]


def suggestion_stamp(row: asyncpg.Record) -> SuggestionStamp:
    """The stamp columns of a ``suggestions`` or ``suggestions_changed_since`` row."""
    refreshed = row["stamp_refreshed"]
    return (
        int(row["stamp_following"]),
        int(row["stamp_followers"]),
        int(row["stamp_interests"]),
        None if refreshed is None else float(refreshed),
    )


async def suggestions_changed_since(
    conn: Conn, user_id: int, since: dt.datetime, start: int = 200
) -> tuple[SuggestionStamp, bool]:
    """The user's stamp now, and whether something their suggestions made at ``since`` came from changed since."""
    row = await conn.fetchrow(_SUGGESTIONS_CHANGED, user_id, since, start)
    assert row is not None
    return suggestion_stamp(row), bool(row["changed"])


@dataclass(frozen=True)
class SuggestionWeights:
    """Each source's part of a suggestion's score (api/reads/suggestions.py says what each means)."""

    fof: float
    fan: float
    engaged: float
    same: float
    shared: float
    topical: float
    popular: float


@dataclass(frozen=True)
class SuggestionSizes:
    """How far each source of ``_SUGGESTION_SOURCES`` reaches (see there)."""

    start: int
    per_step: int
    per_source: int
    per_topical: int
    per_popular: int


@functools.lru_cache(maxsize=8)
def suggestions_statement(weights: SuggestionWeights, sizes: SuggestionSizes) -> str:
    """The sources' statement with these sizes and weights in its text (see ``_SUGGESTION_SOURCES``)."""
    return _SUGGESTION_SOURCES.format(**db.literals("", sizes), **db.literals("w_", weights), stamp=SUGGESTION_STAMP)


async def suggestions(
    conn: Conn,
    user_id: int,
    weights: SuggestionWeights,
    limit: int,
    *,
    start: int = 200,
    per_step: int = 50,
    per_source: int = 200,
    per_topical: int = 100,
    per_popular: int = 50,
) -> list[asyncpg.Record]:
    """The ``limit`` best people for ``user_id`` to follow, from every source at once (see ``_SUGGESTION_SOURCES``),
    each with what every source found and its part of the score, best first; never the user, never someone the
    user follows."""
    statement = suggestions_statement(weights, SuggestionSizes(start, per_step, per_source, per_topical, per_popular))
    return list(await conn.fetch(statement, user_id, limit))
