"""Explore ranks in stages (api/reads/explore.py): a first page reads the facts of the ``FIRST_STAGE`` most relevant
candidates only, the rest wait in the kept ranking, and the cursor that reaches them ranks them after the first
ones. Walked to its end, the ranking is the one ``Explorer.ranking`` makes (every stage at once), no post twice, the
per-author cap over the whole of it. On a real PostgreSQL and Redis, with the explorer as the api runs it."""

from __future__ import annotations

import time
from collections import Counter

import asyncpg
import redis.asyncio as aioredis

from api.reads import explore
from storage import ids
from storage.db import GENERIC_SETTINGS, transaction
from storage.redis import Keys
from tests.conftest import REDIS_URL
from tests.storage.test_graph import _users

SLUGS = ("travel", "food")


async def _posts(db: asyncpg.Pool, authors: list[int], n: int) -> list[int]:
    """``n`` posts of the last hours in the interests of SLUGS, round the authors (three or more each)."""
    now_ms = int(time.time() * 1000)
    made = []
    async with transaction(db) as conn:
        for i in range(n):
            post_id = ids.min_id_at(now_ms - 60_000 * (i + 1)) | (1022 << 12) | i
            author = authors[i % len(authors)]
            await conn.execute(
                "INSERT INTO posts (id, author_id, type, caption) VALUES ($1, $2, 'photo', 'x')", post_id, author
            )
            await conn.execute(
                "INSERT INTO post_interests (post_id, slug, author_id) VALUES ($1, $2, $3)",
                post_id,
                SLUGS[i % len(SLUGS)],
                author,
            )
            made.append(post_id)
    return made


async def _kept(redis: aioredis.Redis, keys: Keys, user_id: int, snapshot: str) -> explore.Kept:
    raw = await redis.get(keys.recommendations(user_id, snapshot))
    kept = explore.read_kept(raw if isinstance(raw, bytes) else None, "explore")
    assert kept is not None
    return kept


async def test_a_ranking_is_made_in_stages_as_its_pages_reach_them(
    db: asyncpg.Pool, database_url: str, redis_prefix: str
) -> None:
    me, *authors = await _users(db, 31)
    # An hour ago: a kept ranking counts writes of the 2 s before it as made after it (CLOCK_MARGIN_S).
    followed = "INSERT INTO interest_follows (user_id, slug, created_at) VALUES ($1, $2, now() - interval '1 hour')"
    await db.executemany(followed, [(me, slug) for slug in SLUGS])
    made = set(await _posts(db, authors, 100))
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2, server_settings=GENERIC_SETTINGS)
    redis = aioredis.Redis.from_url(REDIS_URL)
    assert pool is not None
    try:
        explorer = explore.Explorer(db, redis, Keys(redis_prefix), ranking_pool=pool)
        window = await explorer.page(me, "explore", None, 20)
        assert len(window.items) == 20 and window.following is not None
        kept = await _kept(redis, Keys(redis_prefix), me, window.snapshot)
        assert kept.snapshot == window.snapshot
        assert 20 < len(kept.items) <= explore.FIRST_STAGE, "a first page ranks the first stage only"
        assert kept.waiting, "the other candidates wait, with what their sources said"

        seen = [r.post_id for r in window.items]
        position: explore.Position | None = window.following
        while position is not None:
            window = await explorer.page(me, "explore", position, 20)
            seen += [r.post_id for r in window.items]
            position = window.following
        whole, knobs = await explorer.ranking(me, skip_followed=False)
        assert seen == [r.post_id for r in whole], "the pages walk the ranking that every stage at once makes"
        assert len(seen) == len(set(seen))
        assert len(set(seen) & made) > explore.FIRST_STAGE, "the later stage brought more of the interests' posts"
        per_author = Counter(r.author_id for r in whole)
        assert max(per_author.values()) == knobs.per_author_cap, "the cap holds over both stages"

        kept = await _kept(redis, Keys(redis_prefix), me, window.snapshot)
        assert not kept.waiting and [r.post_id for r in kept.items] == seen
        # The next first page is the kept ranking, now with every stage ranked.
        again = await explorer.page(me, "explore", None, 100)
        assert again.snapshot == window.snapshot and [r.post_id for r in again.items] == seen[:100]
    finally:
        await pool.close()
        await redis.aclose()
