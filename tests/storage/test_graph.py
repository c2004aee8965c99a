"""storage/graph.py on PostgreSQL: counters move with the rows (and only when a row really changed), mutual
follows, the viewer's flags for a page in one query, keyset pages, and opposite follows racing each other
(both counters of both users locked in id order: no deadlock)."""

from __future__ import annotations

import asyncio
import datetime as dt
import random

import asyncpg

from storage import graph
from storage import users as user_store
from storage.db import transaction
from tests.support import unique


async def _users(pool: asyncpg.Pool, n: int) -> list[int]:
    base = random.randrange(10**6, 2 * 10**6) << 22  # an id range no process of this run mints in
    async with transaction(pool) as conn:
        for i in range(n):
            name = unique("g")
            await user_store.insert_user(
                conn,
                user_id=base + i,
                username=name,
                email=f"{name}@example.com",
                name="Graph",
                bio="",
                birthday=dt.date(2000, 1, 31),
                password_hash="x",
            )
    return [base + i for i in range(n)]


async def _counters(pool: asyncpg.Pool, user_id: int) -> tuple[int, int]:
    row = await pool.fetchrow("SELECT followers_count, following_count FROM users WHERE id = $1", user_id)
    assert row is not None
    return int(row["followers_count"]), int(row["following_count"])


async def test_follow_rows_counters_flags_mutuals_and_pages(db: asyncpg.Pool) -> None:
    a, b, c, d = await _users(db, 4)
    async with transaction(db) as conn:
        assert await graph.add_follow(conn, b, a) is not None
        assert await graph.add_follow(conn, b, a) is None  # already there: nothing counted
        assert await graph.add_follow(conn, c, a) is not None
        assert await graph.add_follow(conn, a, b) is not None
    assert await _counters(db, a) == (2, 1) == await graph.counts(db, a)
    assert await _counters(db, b) == (1, 1) == await graph.counts(db, b)
    assert await graph.is_following(db, b, a) and not await graph.is_following(db, a, c)

    assert await graph.mutual_follows(db, a) == [b]
    assert await graph.viewer_flags(db, a, [b, c, d]) == {b: (True, True), c: (False, True), d: (False, False)}
    assert await graph.viewer_flags(db, a, []) == {}
    rows = {int(r["id"]): r for r in await graph.users_with_flags(db, a, [b, c, d, -1])}
    assert {u: (r["followed_by_me"], r["follows_me"]) for u, r in rows.items()} == {
        b: (True, True),
        c: (False, True),
        d: (False, False),
    }
    assert rows[b]["username"] and await graph.users_with_flags(db, a, []) == []

    first = await graph.followers_page(db, a, 1)
    rest = await graph.followers_page(db, a, 10, (first[0]["followed_at"], int(first[0]["id"])))
    assert [int(r["id"]) for r in first + rest] == [c, b]  # newest first, each once
    assert [int(r["id"]) for r in await graph.following_page(db, b, 10)] == [a]

    async with transaction(db) as conn:
        assert await graph.remove_follow(conn, b, a)
        assert not await graph.remove_follow(conn, b, a)
    assert await _counters(db, a) == (1, 1) == await graph.counts(db, a)
    assert await _counters(db, b) == (1, 0) == await graph.counts(db, b)


async def test_opposite_follows_racing_never_deadlock_and_count_exactly(db: asyncpg.Pool) -> None:
    a, b = await _users(db, 2)

    async def flip(follower: int, followee: int, add: bool) -> None:
        async with transaction(db) as conn:
            if add:
                await graph.add_follow(conn, follower, followee)
            else:
                await graph.remove_follow(conn, follower, followee)

    for round_ in range(20):
        add = round_ % 2 == 0
        await asyncio.gather(flip(a, b, add), flip(b, a, add))
        expected = (1, 1) if add else (0, 0)
        assert await _counters(db, a) == expected == await graph.counts(db, a)
        assert await _counters(db, b) == expected == await graph.counts(db, b)
