"""The writes that steer recommendations, in the caller's logical actor (actors/user.py routes them here):
explore feedback, the feed and explore knobs, following interests; and the refresh of the precomputed tables
(trending, each interest's top posts and authors), a shard's periodic job. The read side is api/reads/explore.py.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from domain import ranking
from domain.errors import NotFound, ValidationFailed
from domain.ranking import Knobs
from storage import db, ids
from storage import interests as interest_store
from storage import recs as store

DAY_S = 86400.0
SIGNALS = {"less": -1, "more": 1}


# ------------------------------------------------------------ writes (in the caller's logical actor)


async def give_feedback(pool: asyncpg.Pool, user_id: int, post_id: int, signal: str) -> None:
    value = SIGNALS.get(signal)
    if value is None:
        raise ValidationFailed({"signal": "one of less, more"})
    async with db.transaction(pool) as conn:
        author = await conn.fetchval("SELECT author_id FROM posts WHERE id = $1", post_id)
        if author is None:
            raise NotFound("No such post.")
        slugs = (await interest_store.slugs_of_posts(conn, [post_id])).get(post_id, [])
        await store.save_feedback(conn, user_id, post_id, int(author), slugs, value)


async def set_knobs(pool: asyncpg.Pool, user_id: int, changes: dict[str, Any]) -> Knobs:
    """Apply the given knobs (the others keep their values) and return them all."""
    async with db.transaction(pool) as conn:
        current = ranking.knobs_of(await store.get_knobs(conn, user_id))
        merged = Knobs(
            recency_weight=float(changes.get("recency_weight", current.recency_weight)),
            hide_reposts=bool(changes.get("hide_reposts", current.hide_reposts)),
            per_author_cap=int(changes.get("per_author_cap", current.per_author_cap)),
        )
        await store.put_knobs(conn, user_id, merged.recency_weight, merged.hide_reposts, merged.per_author_cap)
    return merged


async def follow_interest(pool: asyncpg.Pool, user_id: int, slug: str, on: bool) -> bool:
    async with db.transaction(pool) as conn:
        if not await interest_store.exists(conn, slug):
            raise NotFound("No such interest.")
        if on:
            await interest_store.follow(conn, user_id, slug)
        else:
            await interest_store.unfollow(conn, user_id, slug)
    return on


# ------------------------------------------------------------ the precomputed tables (a worker's job)

REFRESH_KEEP = 200


async def refresh(pool: asyncpg.Pool, every_s: float) -> bool:
    """Recompute trending posts and each interest's top posts and authors, at most once per ``every_s`` across
    every process (storage/recs.py ``refresh``)."""
    return await store.refresh(
        pool,
        every_s=max(every_s * 0.9, 0.1),
        day_floor_id=ids.floor_id(DAY_S),
        week_floor_id=ids.floor_id(7 * DAY_S),
        month_floor_id=ids.floor_id(30 * DAY_S),
        keep=REFRESH_KEEP,
    )
