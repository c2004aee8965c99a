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

A ranking is made in stages, as its pages need them: the candidates statement shortlists the ``RANKED_MAX`` most
relevant candidates by their sources (storage/recs.py), and their facts (author, time, engagement, interests, the
caller's flags) are read for the ``FIRST_STAGE`` most relevant first; the rest wait in the kept ranking, with what
their sources said, and are ranked after them when a page reaches them. A first page of 20 is ranked from 40
candidates' facts instead of 120 (the facts were half the statement's cost): explore's hit rate@20 is the same
(benchmarks/recs.py). A later stage keeps the per-author cap over the whole ranking.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from collections import Counter
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
FIRST_STAGE = 40  # of them, those whose facts a new ranking reads first (the rest when a page reaches them)
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


# A candidate waiting for its stage, as kept: what its sources said (a ``candidates`` row, storage/recs.py): post id,
# engaged_by, similar, similar_weight, trend, recent, interest (domain/ranking.py Signals).
Waiting = tuple[int, list[int], int, float, float, bool, bool]


def waiting(row: Any) -> Waiting:
    """What the sources said of one candidate (a ``candidates`` row), as kept until its facts are read."""
    return (
        int(row["post_id"]),
        [int(u) for u in row["users"] or ()],
        int(row["similar_n"]),
        float(row["similar_weight"]),
        float(row["trend"]),
        bool(row["recent"]),
        bool(row["by_interest"]),
    )


def candidate(found: Waiting, row: Any) -> tuple[Signals, Fact]:
    """A candidate as what its sources said and the facts of its post (a ``facts`` row, storage/recs.py)."""
    post_id, engaged_by, similar_n, similar_weight, trend, recent, by_interest = found
    signals = Signals(
        engaged_by=engaged_by,
        similar=similar_n,
        similar_weight=similar_weight,
        trend=trend,
        recent=recent,
        interest=by_interest,
    )
    fact = Fact(
        post_id=post_id,
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


@dataclass
class Kept:
    """A ranking as kept in Redis: its ranked items and the candidates still waiting for their stage."""

    mode: str
    snapshot: str
    made: float
    stamp: list[Any] | None
    items: list[Ranked]
    waiting: list[Waiting]

    def pack(self) -> bytes:
        items = [[r.post_id, r.author_id, r.score, r.reasons] for r in self.items]
        value = {
            "mode": self.mode,
            "snapshot": self.snapshot,
            "made": self.made,
            "stamp": self.stamp,
            "items": items,
            "waiting": [list(w) for w in self.waiting],
        }
        packed: bytes = msgpack.packb(value, use_bin_type=True)
        return packed


def read_kept(raw: bytes | None, mode: str) -> Kept | None:
    """A kept ranking of ``mode``, or None: none kept, or not in the shape this code writes (another version wrote
    it during a deploy): then a new ranking is made."""
    if raw is None:
        return None
    try:
        kept = msgpack.unpackb(raw, raw=False)
        if kept["mode"] != mode:
            return None
        items = [Ranked(int(p), int(a), float(s), list(r)) for p, a, s, r in kept["items"]]
        found = [
            (int(p), [int(u) for u in users], int(n), float(w), float(t), bool(recent), bool(interest))
            for p, users, n, w, t, recent, interest in kept["waiting"]
        ]
        stamp = kept["stamp"]
        return Kept(mode, str(kept["snapshot"]), float(kept["made"]), stamp and list(stamp), items, found)
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

    async def ranking(self, user_id: int, *, skip_followed: bool, want: int = RANKED_MAX) -> tuple[list[Ranked], Knobs]:
        """A new ranking, its stages until it holds more than ``want`` items (by default every stage: the whole
        ranking its pages show, in order; a later stage only adds after), and its knobs."""
        ranked, knobs, _, _ = await self._rank(user_id, skip_followed=skip_followed, want=want)
        return ranked, knobs

    async def _rank(
        self, user_id: int, *, skip_followed: bool, want: int
    ) -> tuple[list[Ranked], Knobs, list[Waiting], Stamp | None]:
        """A new ranking (its stages until more than ``want`` items, or every one), its knobs, the candidates
        still waiting, and the stamp of what it was made from (None without candidates)."""
        async with self.ranking_pool.acquire() as conn:
            rows = await store.candidates(conn, user_id, LIMITS, WEIGHTS)
        stamp = store.stamp_of(rows[0]) if rows else None
        ranked, knobs, found = await self._stages(
            user_id, [], [waiting(row) for row in rows], skip_followed=skip_followed, want=want
        )
        return ranked, knobs, found, stamp

    async def _stages(
        self, user_id: int, ranked: list[Ranked], found: list[Waiting], *, skip_followed: bool, want: int
    ) -> tuple[list[Ranked], Knobs, list[Waiting]]:
        """``ranked`` followed by the next stages of the waiting candidates, until it holds more than ``want`` items
        or none are left: the first stage takes ``FIRST_STAGE`` of them, a later one all the rest. Each stage is
        ranked on its own (domain/ranking.py, with the knobs and feedback of now) after the items before it, and
        the per-author cap holds over the whole ranking."""
        ranked = list(ranked)
        async with self.ranking_pool.acquire() as conn:
            knobs_row, authors, interests = await store.knobs_and_feedback(conn, user_id, FEEDBACK_WINDOW)
            knobs = ranking.knobs_of(knobs_row)
            while found and len(ranked) <= want:
                stage, found = (found[:FIRST_STAGE], found[FIRST_STAGE:]) if not ranked else (found, [])
                facts = await store.facts(conn, user_id, [w[0] for w in stage])
                pairs = [candidate(w, facts[w[0]]) for w in stage if w[0] in facts]
                more = ranking.rank(
                    viewer_id=user_id,
                    signals={fact.post_id: signals for signals, fact in pairs},
                    facts=[fact for _, fact in pairs],
                    feedback=Feedback(authors, interests),
                    knobs=knobs,
                    now=dt.datetime.now(dt.UTC),
                    skip_followed=skip_followed,
                    limit=RANKED_MAX,
                )
                per_author = Counter(r.author_id for r in ranked)
                for item in more:
                    if per_author[item.author_id] < knobs.per_author_cap:
                        per_author[item.author_id] += 1
                        ranked.append(item)
        return ranked, knobs, found

    async def _extend(self, user_id: int, kept: Kept, want: int) -> Kept:
        """The ranking with its next stages, until it holds more than ``want`` items or none are waiting; the
        kept copies get them (for as long as they were to live)."""
        if not kept.waiting or len(kept.items) > want:
            return kept
        items, _, found = await self._stages(
            user_id, kept.items, kept.waiting, skip_followed=kept.mode == "feed", want=want
        )
        kept = Kept(kept.mode, kept.snapshot, kept.made, kept.stamp, items, found)
        packed = kept.pack()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.recommendations(user_id, kept.snapshot), packed, xx=True, keepttl=True)
            if kept.stamp is not None:  # (a newer latest it replaces is checked from its own time, as any kept one)
                pipe.set(self.keys.latest_recommendations(user_id, kept.mode), packed, xx=True, keepttl=True)
            await pipe.execute()
        return kept

    async def start(self, user_id: int, mode: str, want: int = 0) -> tuple[str, list[Ranked]]:
        """A new ranking (its stages until more than ``want`` items), kept under a new snapshot id (and as the
        caller's latest, see ``first``)."""
        kept = await self._start(user_id, mode, want)
        return kept.snapshot, kept.items

    async def _start(self, user_id: int, mode: str, want: int) -> Kept:
        made = time.time() - CLOCK_MARGIN_S
        ranked, _, found, stamp = await self._rank(user_id, skip_followed=mode == "feed", want=want)
        kept = Kept(mode, secrets.token_hex(8), made, stamp and list(stamp), ranked, found)
        packed = kept.pack()  # one value for both keys: the snapshot's cursors read it, ``first`` the latest
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.recommendations(user_id, kept.snapshot), packed, ex=SNAPSHOT_TTL_S)
            if stamp is not None:
                pipe.set(self.keys.latest_recommendations(user_id, mode), packed, ex=KEEP_S)
            await pipe.execute()
        return kept

    async def first(self, user_id: int, mode: str, want: int = 0) -> tuple[str, list[Ranked]]:
        """The ranking for a first page (more than ``want`` items while there are): the caller's latest while
        nothing it came from has changed, else new."""
        kept = await self._first(user_id, mode, want)
        return kept.snapshot, kept.items

    async def _first(self, user_id: int, mode: str, want: int) -> Kept:
        kept = read_kept(await self.redis.get(self.keys.latest_recommendations(user_id, mode)), mode)
        if kept is not None:
            since = dt.datetime.fromtimestamp(kept.made, dt.UTC)
            floor = ids.min_id_at(int(kept.made * 1000))
            stamp, changed = await store.changed_since(self.pool, user_id, since, floor, LIMITS.followees)
            if not changed and list(stamp) == kept.stamp:
                return await self._extend(user_id, kept, want)
        return await self._start(user_id, mode, want)

    async def _load(self, user_id: int, mode: str, snapshot: str) -> Kept | None:
        """A kept ranking; None when it expired (or is another list's)."""
        kept = read_kept(await self.redis.get(self.keys.recommendations(user_id, snapshot)), mode)
        return kept if kept is not None and kept.snapshot == snapshot else None

    async def page(self, user_id: int, mode: str, position: Position | None, limit: int) -> Window:
        """One page of a ranking: a new one without a position, or when the position's ranking expired (its
        client comes back after ``SNAPSHOT_TTL_S``: it gets today's picks from the top). The ranking's next stage is
        ranked when the page reaches it. Authors blocked since the ranking was made are left out."""
        kept = None if position is None else await self._load(user_id, mode, position.snapshot)
        if position is None:
            kept = await self._first(user_id, mode, limit)
            offset = 0
        elif kept is None:
            kept = await self._start(user_id, mode, limit)
            offset = 0
        else:
            offset = position.offset
            kept = await self._extend(user_id, kept, offset + limit)
        ranked = kept.items
        if position is not None:
            authors, _ = await store.feedback_totals(self.pool, user_id, FEEDBACK_WINDOW)
            ranked = [r for r in ranked if authors.get(r.author_id, 0) >= 0]
        window = ranked[offset : offset + limit]
        end = offset + len(window)
        more = end < len(ranked) or bool(kept.waiting)
        return Window(window, Position(kept.snapshot, end) if more else None, kept.snapshot, offset)


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
