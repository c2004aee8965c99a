"""A synthetic follow graph, written straight into PostgreSQL with COPY: 100k users and 2M follows by default.

Followers are power-law-ish (Zipf-Mandelbrot: the user of rank r has about K / (r + 2) followers, K chosen so the
counts add up to ``--follows``): with the defaults the top users have about 90k, 60k and 45k followers, the
thousandth 180, the median user 8. Each follower of a user is drawn uniformly from everyone else (so ``following``
counts are about Poisson(20)); follow times are uniform over 2025, users were made in 2024 before any of them. A
fixed ``--seed`` makes the same graph every time. Ranks are shuffled over user ids, so celebrities are anywhere.

The rows are what the app would have written: users valid for migration 0001 (lower-case ``user000000`` ..
``user099999``, ``user<n>@graph.example``, one fixed argon2id hash: these users never log in), Snowflake ids minted
from their ``created_at`` with node 1023 (in the past, so no live generator can mint them again), follows per
migration 0006 in time order, and ``followers_count`` / ``following_count`` equal to the rows (checked after the
load). The follows' primary key, foreign keys and indexes are dropped for the COPY and put back from their own
definitions (``pg_get_constraintdef`` / ``pg_indexes``) afterwards, then both tables are vacuumed and analyzed
(autovacuum may be off). The database must be migrated and hold no users yet.

    .venv/bin/python benchmarks/graph_seed.py --database-url postgresql://postgres@127.0.0.1:5432/<migrated db>

``benchmarks/graph_reads.py`` calls ``seed()`` on its own throwaway database.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # as a script: import from the repository root (benchmarks/actors.py shadows `actors`)
    sys.path.remove(os.path.dirname(os.path.realpath(__file__)))
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import asyncio
import datetime as dt
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg

from storage.ids import EPOCH_MS, MAX_NODE, NODE_BITS, SEQ_BITS

PASSWORD_HASH = "$argon2id$v=19$m=19456,t=2,p=1$aTlncmFwaHNlZWQwMDAwMA$CTckm6oDB9jU42KLCzx4YuTydgeFBPfWJBYzFWnS3FI"  # noqa: S105 (a hash)
USERS_FROM = dt.datetime(2024, 1, 15, tzinfo=dt.UTC)  # users are made from here, one every 4 minutes
FOLLOWS_FROM = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)  # follows are uniform over [FOLLOWS_FROM, FOLLOWS_UNTIL)
FOLLOWS_UNTIL = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ZIPF_SHIFT = 2.0
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Graph:
    users: int
    follows: int
    top: list[tuple[str, int, int]]  # (username, user id, followers), most followed first
    most_following: tuple[str, int, int]  # (username, user id, following): who follows the most users
    median_followers: int
    seconds: dict[str, float]  # phase -> wall seconds


def username(index: int) -> str:
    return f"user{index:06d}"


def follower_counts(users: int, follows: int, rng: random.Random) -> list[int]:
    """Followers of the user of each rank (most followed first), summing to exactly ``follows``."""
    weights = [1.0 / (r + ZIPF_SHIFT) for r in range(users)]
    scale = follows / sum(weights)
    cap = users - 1  # nobody follows themselves
    counts = [min(cap, int(scale * w + rng.random())) for w in weights]  # random rounding keeps the sum near
    missing = follows - sum(counts)
    while missing:
        r = rng.randrange(users)
        step = 1 if missing > 0 else -1
        if 0 <= counts[r] + step <= cap:
            counts[r] += step
            missing -= step
    return counts


def user_id(index: int) -> int:
    """A Snowflake id of the user's ``created_at`` on node 1023 (one user per millisecond at most)."""
    ms = int((user_created_at(index) - _EPOCH).total_seconds() * 1000)
    return ((ms - EPOCH_MS) << (NODE_BITS + SEQ_BITS)) | (MAX_NODE << SEQ_BITS)


def user_created_at(index: int) -> dt.datetime:
    return USERS_FROM + dt.timedelta(minutes=4 * index)  # 100k users: until the end of 2024


def generate(users: int, follows: int, seed: int) -> tuple[list[tuple[int, int, int]], list[int], list[int]]:
    """Follows as (microseconds after FOLLOWS_FROM, follower index, followee index) in time order, and the
    followers / following count of each user index."""
    rng = random.Random(seed)
    counts = follower_counts(users, follows, rng)
    ranks = list(range(users))
    rng.shuffle(ranks)  # ranks[r] = the user index of rank r
    span_us = (FOLLOWS_UNTIL - FOLLOWS_FROM) // dt.timedelta(microseconds=1)
    rows: list[tuple[int, int, int]] = []
    others = range(users - 1)
    for rank, count in enumerate(counts):
        followee = ranks[rank]
        for j in rng.sample(others, count):
            rows.append((rng.randrange(span_us), j + (j >= followee), followee))
    rows.sort()
    followers = [0] * users
    following = [0] * users
    for _, follower, followee in rows:
        following[follower] += 1
        followers[followee] += 1
    return rows, followers, following


async def _follow_schema(conn: asyncpg.Connection) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The follows table's primary and foreign keys (name, definition) and its other indexes (name, DDL)."""
    keys = await conn.fetch(
        """SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
           WHERE conrelid = 'follows'::regclass AND contype IN ('p', 'f') ORDER BY contype DESC, conname"""
    )
    indexes = await conn.fetch(
        """SELECT i.indexname, i.indexdef FROM pg_indexes i
           WHERE i.schemaname = current_schema() AND i.tablename = 'follows'
             AND i.indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = 'follows'::regclass)
           ORDER BY i.indexname"""
    )
    return [(r["conname"], r["def"]) for r in keys], [(r["indexname"], r["indexdef"]) for r in indexes]


async def seed(dsn: str, users: int = 100_000, follows: int = 2_000_000, seed: int = 9) -> Graph:
    """Write the graph into the migrated, user-less database at ``dsn``; returns what was written."""
    assert users * 4 * 60_000 < (FOLLOWS_FROM - USERS_FROM) // dt.timedelta(milliseconds=1), "users overlap follows"
    seconds: dict[str, float] = {}
    started = time.monotonic()
    rows, followers, following = generate(users, follows, seed)
    seconds["generate (Python)"] = time.monotonic() - started
    conn = await asyncpg.connect(dsn)
    try:
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users)"):
            raise RuntimeError("the database already has users: seed a freshly migrated one")
        await conn.execute("SET maintenance_work_mem = '256MB'")
        keys, indexes = await _follow_schema(conn)
        ids = [user_id(i) for i in range(users)]

        phase = time.monotonic()
        async with conn.transaction():
            for name, _ in reversed(keys):  # foreign keys first, then the primary key
                await conn.execute(f'ALTER TABLE follows DROP CONSTRAINT "{name}"')
            for name, _ in indexes:
                await conn.execute(f'DROP INDEX "{name}"')
            await conn.copy_records_to_table(
                "users",
                columns=[
                    "id",
                    "username",
                    "email",
                    "name",
                    "bio",
                    "birthday",
                    "password_hash",
                    "followers_count",
                    "following_count",
                    "created_at",
                    "updated_at",
                ],
                records=_users(users, ids, followers, following),
            )
            seconds["COPY users"] = time.monotonic() - phase
            phase = time.monotonic()
            await conn.copy_records_to_table(
                "follows", columns=["follower_id", "followee_id", "created_at"], records=_follows(rows, ids)
            )
            seconds["COPY follows"] = time.monotonic() - phase
            phase = time.monotonic()
            for name, definition in keys:  # the primary key first, then the foreign keys (validated here)
                await conn.execute(f'ALTER TABLE follows ADD CONSTRAINT "{name}" {definition}')
            for _, ddl in indexes:
                await conn.execute(ddl)
            seconds["keys and indexes"] = time.monotonic() - phase
        del rows

        phase = time.monotonic()
        wrong = await conn.fetchval(
            """SELECT count(*) FROM users u
               LEFT JOIN (SELECT followee_id, count(*) AS n FROM follows GROUP BY 1) a ON a.followee_id = u.id
               LEFT JOIN (SELECT follower_id, count(*) AS n FROM follows GROUP BY 1) b ON b.follower_id = u.id
               WHERE u.followers_count <> coalesce(a.n, 0) OR u.following_count <> coalesce(b.n, 0)"""
        )
        if wrong:
            raise RuntimeError(f"{wrong} users' counters disagree with their follows rows")
        seconds["counter check"] = time.monotonic() - phase
        phase = time.monotonic()
        await conn.execute("VACUUM (ANALYZE) users")
        await conn.execute("VACUUM (ANALYZE) follows")
        seconds["VACUUM (ANALYZE)"] = time.monotonic() - phase
    finally:
        await conn.close()
    seconds["total"] = time.monotonic() - started

    order = sorted(range(users), key=lambda i: -followers[i])
    busiest = max(range(users), key=lambda i: following[i])
    return Graph(
        users=users,
        follows=follows,
        top=[(username(i), ids[i], followers[i]) for i in order[:5]],
        most_following=(username(busiest), ids[busiest], following[busiest]),
        median_followers=followers[order[users // 2]],
        seconds=seconds,
    )


def _users(users: int, ids: list[int], followers: list[int], following: list[int]) -> Iterator[tuple[object, ...]]:
    for i in range(users):
        made = user_created_at(i)
        name = username(i)
        birthday = dt.date(1970 + i % 36, 1 + i % 12, 1 + i % 28)
        yield (
            ids[i],
            name,
            f"{name}@graph.example",
            f"User {i}",
            "",
            birthday,
            PASSWORD_HASH,
            followers[i],
            following[i],
            made,
            made,
        )


def _follows(rows: list[tuple[int, int, int]], ids: list[int]) -> Iterator[tuple[int, int, dt.datetime]]:
    for micros, follower, followee in rows:
        yield ids[follower], ids[followee], FOLLOWS_FROM + dt.timedelta(microseconds=micros)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="a migrated database with no users yet")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--follows", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()
    graph = asyncio.run(seed(args.database_url, args.users, args.follows, args.seed))
    print(f"{graph.users:,} users, {graph.follows:,} follows; median followers {graph.median_followers}")
    for name, uid, n in graph.top:
        print(f"  {name} (id {uid}): {n:,} followers")
    name, uid, n = graph.most_following
    print(f"  most following: {name} (id {uid}) follows {n}")
    for phase, s in graph.seconds.items():
        print(f"  {phase}: {s:.1f} s")


if __name__ == "__main__":
    main()
