"""The writes that steer recommendations, in the caller's logical actor (actors/user.py routes them here):
explore feedback, the feed and explore knobs, following interests; and the refresh of the precomputed tables
(trending, each interest's top posts and authors), a shard's periodic job. The read side is api/reads/explore.py.
"""

from __future__ import annotations

import asyncpg

from actors.after_commit import follows_changed
from actors.runtime.host import Done
from actors.runtime.services import Services
from actors.user import UserState
from domain import ranking
from domain.errors import NotFound
from domain.ops import FollowInterest, GiveExploreFeedback, SetRecommendationKnobs
from domain.ranking import Knobs
from domain.wire import recs as wire
from storage import db, ids
from storage import interests as interest_store
from storage import posts as post_store
from storage import recs as store

DAY_S = 86400.0
SIGNALS = {"less": -1, "more": 1}


class RecommendationOps:
    """Explore feedback, the knobs, and following interests (the op table is derived from the ``op`` types)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def give_feedback(self, state: UserState, op: GiveExploreFeedback) -> Done[None]:
        async with db.transaction(self.services.pool) as conn:
            author = await post_store.get_author(conn, op.post_id)
            if author is None:
                raise NotFound("No such post.")
            slugs = (await interest_store.slugs_of_posts(conn, [op.post_id])).get(op.post_id, [])
            await store.save_feedback(conn, state.user_id, op.post_id, int(author), slugs, SIGNALS[op.signal])
        return Done(None)

    async def set_knobs(self, state: UserState, op: SetRecommendationKnobs) -> Done[wire.Knobs]:
        """Apply the given knobs (the others keep their values) and return them all; hide_reposts changes the
        feed, so its cached pages go stale."""
        async with db.transaction(self.services.pool) as conn:
            current = ranking.knobs_of(await store.get_knobs(conn, state.user_id))
            merged = Knobs(
                recency_weight=current.recency_weight if op.recency_weight is None else float(op.recency_weight),
                hide_reposts=current.hide_reposts if op.hide_reposts is None else bool(op.hide_reposts),
                per_author_cap=current.per_author_cap if op.per_author_cap is None else int(op.per_author_cap),
            )
            await store.put_knobs(
                conn, state.user_id, merged.recency_weight, merged.hide_reposts, merged.per_author_cap
            )
        return Done(wire.Knobs(**merged.to_wire()), effects=[follows_changed(self.services, state.user_id)])

    async def follow_interest(self, state: UserState, op: FollowInterest) -> Done[bool]:
        """Follow or unfollow an interest (idempotent); 404 for a slug not in the catalogue."""
        async with db.transaction(self.services.pool) as conn:
            if not await interest_store.exists(conn, op.slug):
                raise NotFound("No such interest.")
            if op.on:
                await interest_store.follow(conn, state.user_id, op.slug)
            else:
                await interest_store.unfollow(conn, state.user_id, op.slug)
        return Done(op.on)


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
