"""Explore (issue 14), the read side in api processes: gather candidates, rank them (domain/ranking.py), keep the
ranking for its cursors. The writes that steer it (feedback, knobs) run in the caller's logical actor
(actors/recommendations.py).

A ranking is made on a request without a cursor and kept in Redis for ``SNAPSHOT_TTL_S`` under a random
snapshot id; its cursor ``r<snapshot>.<offset>`` pages through that one list, so pages never re-rank or repeat.
Feedback given since is applied to every page read (an author I said "less" to is dropped at once). The same
ranking, without people I follow, continues the home feed past the caller's timeline (``skip_followed``).

The caller's latest ranking also serves their next first page for up to ``KEEP_S`` while nothing it was made from
has changed (storage/recs.py ``changed_since``: one statement of index probes, ~20x cheaper than a ranking): not
the caller's follows, interests, feedback, knobs or reactions, not a new post in a followed interest, not a
reaction, comment or repost by someone they follow, not a refresh of the trending tables. What it does not wait
for is a new post elsewhere (the newest-posts source) and changed counts; a kept ranking is at most ``KEEP_S`` old.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgpack

from api.reads.posts import PostReader
from domain import present, ranking
from domain.ranking import Fact, Feedback, Knobs, Ranked, Signals
from domain.wire import recs as wire
from domain.wire.posts import Post
from domain.wire.users import UserSummary
from storage import ids, live_cache
from storage import recs as store
from storage import users as user_store
from storage.recs import Stamp

SNAPSHOT_TTL_S = 1800
KEEP_S = 60  # a first page may come from the caller's latest ranking this long (while nothing changed)
CLOCK_MARGIN_S = 2.0  # a kept ranking counts as made this much before it was: writes in flight meanwhile count
RANKED_MAX = 120  # posts in one ranking (the most relevant candidates by their sources are read: the shortlist)
FEEDBACK_WINDOW = 500  # the latest signals of a user that count
DAY_S = 86400.0
WEIGHTS = store.Weights(
    interest=ranking.W_INTEREST,
    engaged=ranking.W_ENGAGED,
    similar=ranking.W_SIMILAR,
    trending=ranking.W_TRENDING,
    recent=ranking.W_RECENT,
)


# The sources' sizes and windows (benchmarks/recs.py measured hit rate against latency for these).
LIMITS = store.Limits(
    per_slug=40,
    interest_s=14 * DAY_S,
    followees=300,
    per_followee=30,
    engaged_s=14 * DAY_S,
    engaged=400,
    mine=50,
    per_post=50,
    peers=100,
    per_peer=30,
    similar_s=30 * DAY_S,
    similar=300,
    trending=150,
    recent_s=3 * DAY_S,
    recent=60,
    shortlist=RANKED_MAX,
)


CURSOR_PATTERN = r"^r[0-9a-f]{16}\.[0-9]{1,3}$"
_CURSOR = re.compile(CURSOR_PATTERN)
SIGNALS = {"less": -1, "more": 1}


@dataclass(frozen=True)
class Position:
    snapshot: str
    offset: int

    def encode(self) -> str:
        return f"r{self.snapshot}.{self.offset}"

    @staticmethod
    def decode(value: str) -> Position | None:
        if not _CURSOR.match(value):
            return None
        snapshot, _, offset = value[1:].partition(".")
        return Position(snapshot, int(offset))


@dataclass(frozen=True)
class Window:
    """A page of a ranking: its items, the position of the next page (None: the last), and where it is (the
    ranking's snapshot id and the offset of its first item: a page is the same for the same place)."""

    items: list[Ranked]
    following: Position | None
    snapshot: str
    offset: int


def candidate(row: Any) -> tuple[Signals, Fact]:
    """A candidate row (storage/recs.py ``candidates``) as what its sources said and the facts of its post."""
    signals = Signals(
        engaged_by=[int(u) for u in row["users"] or ()],
        similar=int(row["similar_n"]),
        similar_weight=float(row["similar_weight"]),
        trend=float(row["trend"]),
        recent=bool(row["recent"]),
        interest=bool(row["by_interest"]),
    )
    fact = Fact(
        post_id=int(row["post_id"]),
        author_id=int(row["author_id"]),
        created_at=row["created_at"],
        engagement=int(row["engagement"]),
        slugs=tuple(row["slugs"]),
        followed_slugs=tuple(row["followed_slugs"]),
        reacted=bool(row["reacted"]),
        judged=bool(row["judged"]),
        in_timeline=bool(row["in_timeline"]),
    )
    return signals, fact


def read_kept(raw: bytes | None, mode: str) -> tuple[float, list[Any], str, list[Ranked]] | None:
    """A kept latest ranking of ``mode`` (made, stamp, snapshot, items), or None: none kept, or not in the shape
    this code writes (another version wrote it during a deploy): then a new ranking is made."""
    if raw is None:
        return None
    try:
        kept = msgpack.unpackb(raw, raw=False)
        if kept["mode"] != mode:
            return None
        items = [Ranked(int(p), int(a), float(s), list(r)) for p, a, s, r in kept["items"]]
        return float(kept["made"]), list(kept["stamp"]), str(kept["snapshot"]), items
    except (KeyError, TypeError, ValueError):
        return None


class KeptLists:
    """What explore and who-to-follow (api/reads/suggestions.py) read with, in one process (api worker): ``pool``
    plans each statement for its parameters (the checks of kept lists: their generic plans are slow),
    ``ranking_pool`` makes one plan per connection (new lists: storage/db.py GENERIC_SETTINGS), and Redis keeps
    the lists."""

    def __init__(self, pool: asyncpg.Pool, redis: Any, keys: Any, *, ranking_pool: asyncpg.Pool | None = None) -> None:
        self.pool = pool
        self.ranking_pool = ranking_pool or pool
        self.redis = redis
        self.keys = keys


class Explorer(KeptLists):
    """Rankings and their pages for one process (api worker)."""

    async def ranking(self, user_id: int, *, skip_followed: bool) -> tuple[list[Ranked], Knobs]:
        ranked, knobs, _ = await self._rank(user_id, skip_followed=skip_followed)
        return ranked, knobs

    async def _rank(self, user_id: int, *, skip_followed: bool) -> tuple[list[Ranked], Knobs, Stamp | None]:
        """A new ranking, its knobs, and the stamp of what it was made from (None without candidates)."""
        async with self.ranking_pool.acquire() as conn:
            knobs_row, authors, interests = await store.knobs_and_feedback(conn, user_id, FEEDBACK_WINDOW)
            rows = await store.candidates(conn, user_id, LIMITS, WEIGHTS)
        knobs = ranking.knobs_of(knobs_row)
        found = [candidate(row) for row in rows]
        ranked = ranking.rank(
            viewer_id=user_id,
            signals={fact.post_id: signals for signals, fact in found},
            facts=[fact for _, fact in found],
            feedback=Feedback(authors, interests),
            knobs=knobs,
            now=dt.datetime.now(dt.UTC),
            skip_followed=skip_followed,
            limit=RANKED_MAX,
        )
        return ranked, knobs, store.stamp_of(rows[0]) if rows else None

    async def start(self, user_id: int, mode: str) -> tuple[str, list[Ranked]]:
        """A new ranking, kept under a new snapshot id (and as the caller's latest, see ``first``)."""
        made = time.time() - CLOCK_MARGIN_S
        ranked, _, stamp = await self._rank(user_id, skip_followed=mode == "feed")
        snapshot = secrets.token_hex(8)
        items = [[r.post_id, r.author_id, r.score, r.reasons] for r in ranked]
        # One value for both keys: the snapshot's cursors read its mode and items, ``first`` all of it.
        value = {"mode": mode, "snapshot": snapshot, "made": made, "stamp": stamp and list(stamp), "items": items}
        packed = msgpack.packb(value, use_bin_type=True)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.recommendations(user_id, snapshot), packed, ex=SNAPSHOT_TTL_S)
            if stamp is not None:
                pipe.set(self.keys.latest_recommendations(user_id, mode), packed, ex=KEEP_S)
            await pipe.execute()
        return snapshot, ranked

    async def first(self, user_id: int, mode: str) -> tuple[str, list[Ranked]]:
        """The ranking for a first page: the caller's latest while nothing it came from has changed, else new."""
        kept = read_kept(await self.redis.get(self.keys.latest_recommendations(user_id, mode)), mode)
        if kept is not None:
            made, stamp_then, snapshot, ranked = kept
            since = dt.datetime.fromtimestamp(made, dt.UTC)
            floor = ids.min_id_at(int(made * 1000))
            stamp, changed = await store.changed_since(self.pool, user_id, since, floor, LIMITS.followees)
            if not changed and list(stamp) == stamp_then:
                return snapshot, ranked
        return await self.start(user_id, mode)

    async def load(self, user_id: int, mode: str, snapshot: str) -> list[Ranked] | None:
        """A kept ranking; None when it expired (or is another list's)."""
        raw = await self.redis.get(self.keys.recommendations(user_id, snapshot))
        if raw is None:
            return None
        data = msgpack.unpackb(raw, raw=False)
        if data.get("mode") != mode:
            return None
        return [Ranked(int(p), int(a), float(s), list(r)) for p, a, s, r in data["items"]]

    async def page(self, user_id: int, mode: str, position: Position | None, limit: int) -> Window:
        """One page of a ranking: a new one without a position, or when the position's ranking expired (its
        client comes back after ``SNAPSHOT_TTL_S``: it gets today's picks from the top). Authors blocked since
        the ranking was made are left out."""
        kept = None if position is None else await self.load(user_id, mode, position.snapshot)
        if position is None:
            snapshot, ranked = await self.first(user_id, mode)
            offset = 0
        elif kept is None:
            snapshot, ranked = await self.start(user_id, mode)
            offset = 0
        else:
            snapshot, offset = position.snapshot, position.offset
            authors, _ = await store.feedback_totals(self.pool, user_id, FEEDBACK_WINDOW)
            ranked = [r for r in kept if authors.get(r.author_id, 0) >= 0]
        window = ranked[offset : offset + limit]
        end = offset + len(window)
        return Window(window, Position(snapshot, end) if end < len(ranked) else None, snapshot, offset)


async def get_knobs(pool: asyncpg.Pool, user_id: int) -> Knobs:
    return ranking.knobs_of(await store.get_knobs(pool, user_id))


async def knobs(pool: asyncpg.Pool, user_id: int) -> wire.Knobs:
    """The caller's knobs as sent (``GET /me/recommendations``)."""
    return wire.Knobs(**(await get_knobs(pool, user_id)).to_wire())


# ------------------------------------------------------------ presenting: posts with their reasons


def named_in(reasons_lists: Iterable[Iterable[dict[str, Any]]]) -> set[int]:
    """The people these reasons (as ranked: ``user_ids``) name."""
    return {int(u) for reasons in reasons_lists for r in reasons for u in r.get("user_ids", ())}


def people_in(raw: dict[str, Any], people: Mapping[int, UserSummary]) -> list[UserSummary]:
    """The people a reason names, as sent (those gone since are left out)."""
    return [people[int(u)] for u in raw.get("user_ids", ()) if int(u) in people]


def post_reason(raw: dict[str, Any], people: Mapping[int, UserSummary]) -> wire.PostReason:
    """A reason as ranked (domain/ranking.py: a dict, people as ``user_ids``) as sent."""
    kind, score = raw["type"], raw["score"]
    if kind == "interest":
        return wire.InterestReason(interest=raw["interest"], score=score)
    if kind == "engaged_by_following":
        return wire.EngagedByFollowingReason(users=people_in(raw, people), count=raw["count"], score=score)
    if kind == "similar_users":
        return wire.SimilarUsersReason(count=raw["count"], score=score)
    if kind == "trending":
        return wire.TrendingReason(score=score)
    if kind == "recent":
        return wire.RecentReason(score=score)
    if kind == "following":
        return wire.FollowingReason(score=score)
    raise ValueError(f"a reason of an unknown type: {kind!r}")


async def summaries(pool: asyncpg.Pool, base_url: str, user_ids: Iterable[int]) -> dict[int, UserSummary]:
    """UserSummaries (without viewer flags) of these people, one query (those gone are left out)."""
    wanted = list(set(user_ids))
    rows = await user_store.get_users(pool, wanted) if wanted else []
    return {int(r["id"]): present.user_summary(r, base_url) for r in rows}


async def recommended_posts(
    posts: PostReader, pool: asyncpg.Pool, base_url: str, user_id: int, ranked: list[Ranked]
) -> list[tuple[Post, Ranked, list[wire.PostReason]]]:
    """The ranked posts still there, for the viewer, with their reasons as sent: (post, ranked item, reasons). The
    posts come through the process's post reader; the people the reasons name in one query."""
    found = await posts.views(pool, [r.post_id for r in ranked], user_id)
    kept = [r for r in ranked if r.post_id in found]
    people = await summaries(pool, base_url, named_in(r.reasons for r in kept))
    return [(found[r.post_id], r, [post_reason(raw, people) for raw in r.reasons]) for r in kept]


async def explore_page(
    posts: PostReader, pool: asyncpg.Pool, base_url: str, user_id: int, window: Window
) -> wire.ExplorePage:
    items = [
        wire.ExploreItem(post=post, reasons=reasons, score=item.score)
        for post, item, reasons in await recommended_posts(posts, pool, base_url, user_id, window.items)
    ]
    following = window.following
    return wire.ExplorePage(items=items, next_cursor=None if following is None else following.encode())


def first_page_versions(keys: Any, window: Window) -> list[str]:
    """What a cached first page of explore depends on (api/response_cache.py): its posts and the people shown."""
    versions = [live_cache.version_key(keys, r.post_id) for r in window.items]
    versions.append(live_cache.profiles_version_key(keys))
    return versions
