"""The graph store (DESIGN.md 6): follows in PostgreSQL, indexed in both directions.

Every graph query of the app sits here, behind this small interface (followers and followees pages, mutual
follows, the viewer's flags for a page of users), so that another store can answer them without touching
callers. Functions take a connection and never commit. The follow counters on ``users`` change in the same
statement sequence as the row they count (``add_follow`` / ``remove_follow``), in the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TypeAlias

import asyncpg

from storage.users import USER_COLUMNS

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
# A keyset position in a follow list: (created_at, user id) of the last row seen, newest first.
Position: TypeAlias = tuple[dt.datetime, int]

_SUMMARY = ", ".join(f"u.{c.strip()}" for c in USER_COLUMNS.split(","))


async def _bump(conn: asyncpg.Connection, follower_id: int, followee_id: int, delta: int) -> None:
    """Both counters, the two rows locked in id order (two opposite follows never deadlock)."""
    for user_id in sorted((follower_id, followee_id)):
        column = "following_count" if user_id == follower_id else "followers_count"
        await conn.execute(f"UPDATE users SET {column} = {column} + $2 WHERE id = $1", user_id, delta)


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
