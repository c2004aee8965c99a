"""Who to follow (issue 14): the sources' weights and the reasons of each suggestion. The graph query
(storage/graph.py ``suggestions``) gathers the candidates, merges them per person and scores them with these
weights in one round trip; this module says why, from the parts it returns.

    source                    reason                                                   part of the score
    people I follow follow    {"type": "followed_by_following", "users", "count": n}   1.2 x ln(1 + n)
    they follow me            {"type": "follows_you"}                                  1.0
    I engage with their posts {"type": "engaged_with", "count": n}                     0.8 x ln(1 + n)
    they follow whom I follow {"type": "similar_follows", "users", "count": n}         0.5 x ln(1 + n)
    shared interests          {"type": "shared_interests", "interests", "count": n}    0.3 x n
    popular in my interests   {"type": "popular_in_interest", "interest"}              0.4
    popular                   {"type": "popular", "followers_count"}                   0.2 x ln(1 + f) / ln(1 + top f)

``score`` is the sum of the parts; each reason carries its part as ``score``. Never myself, never someone I
already follow. ``users`` holds up to 3 people who make the link (as user ids here, ``user_ids``, until
``suggestion_list`` presents them).

A user's latest suggestions (per page size) are kept in Redis for ``KEEP_S`` and serve their next request while
nothing they were made from changed (storage/graph.py ``suggestions_changed_since``: index probes, ~5x cheaper
than the sources): not the user's follows, followers, interests, reactions or comments, not someone following
one of their interests, not a follow by or of someone they follow, not a refresh that changed each interest's top
authors. What it does not wait for: an unfollow between other people, and the ranking of the most followed.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

import asyncpg
import msgpack

from api.reads.explore import CLOCK_MARGIN_S, KeptLists, named_in, people_in  # the same margin for writes in flight
from domain import present
from domain.wire import recs as wire
from domain.wire.users import UserSummary
from storage import graph, live_cache
from storage.graph import SuggestionWeights

WEIGHTS = SuggestionWeights(fof=1.2, fan=1.0, engaged=0.8, same=0.5, shared=0.3, topical=0.4, popular=0.2)


def reasons_of(row: Any) -> list[dict[str, Any]]:
    """The reasons of one suggested person (a row of ``storage.graph.suggestions``), largest part first."""
    reasons: list[dict[str, Any]] = []

    def add(part: Any, reason: dict[str, Any]) -> None:
        if part and float(part) > 0:
            reasons.append({**reason, "score": round(float(part), 4)})

    add(row["fof_part"], {"type": "followed_by_following", "user_ids": _ids(row["fof_via"]), "count": _n(row["fof_n"])})
    add(row["fan_part"], {"type": "follows_you"})
    add(row["engaged_part"], {"type": "engaged_with", "count": _n(row["engaged_n"])})
    add(row["same_part"], {"type": "similar_follows", "user_ids": _ids(row["same_via"]), "count": _n(row["same_n"])})
    shared = list(row["shared_slugs"] or ())
    add(row["shared_part"], {"type": "shared_interests", "interests": shared[:5], "count": _n(row["shared_n"])})
    topical = list(row["topical_slugs"] or ())
    if topical:
        add(row["topical_part"], {"type": "popular_in_interest", "interest": topical[0]})
    add(row["popular_part"], {"type": "popular", "followers_count": _n(row["followers"])})
    reasons.sort(key=lambda r: -r["score"])
    return reasons


def _n(value: Any) -> int:
    return int(value or 0)


def _ids(values: Any) -> list[int]:
    return [int(v) for v in (values or ())][:3]


KEEP_S = 60  # a user's latest suggestions may serve their next request this long (while nothing changed)
# The columns of a suggestion row that its reasons and score come from (what is kept).
FIELDS = (
    "user_id", "score", "fof_part", "fof_via", "fof_n", "fan_part", "engaged_part", "engaged_n", "same_part",
    "same_via", "same_n", "shared_part", "shared_slugs", "shared_n", "topical_part", "topical_slugs",
    "popular_part", "followers",
)  # fmt: skip


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


def read_kept(raw: bytes | None) -> tuple[float, list[Any], list[dict[str, Any]]] | None:
    """Kept suggestions (made, stamp, rows), or None: none kept, or not in the shape this code writes (another
    version wrote them during a deploy): then they are made anew."""
    if raw is None:
        return None
    try:
        kept = msgpack.unpackb(raw, raw=False)
        rows = [dict(row) for row in kept["rows"]]
        if not all(set(FIELDS) <= set(row) for row in rows):
            return None
        return float(kept["made"]), list(kept["stamp"]), rows
    except (KeyError, TypeError, ValueError):
        return None


class Suggester(KeptLists):
    """Suggestions for one process (api worker): kept, or made anew (see the module's docstring)."""

    async def rows(self, user_id: int, limit: int) -> tuple[list[dict[str, Any]], float, bool]:
        """The ``limit`` best people for ``user_id``, each as the ``FIELDS`` of its row, best first; when this
        list was made (the same for every request it serves while kept); and whether it is the kept one."""
        key = self.keys.latest_suggestions(user_id, limit)
        kept = read_kept(await self.redis.get(key))
        if kept is not None:
            made, stamp_then, rows = kept
            since = dt.datetime.fromtimestamp(made, dt.UTC)
            stamp, changed = await graph.suggestions_changed_since(self.pool, user_id, since)
            if not changed and list(stamp) == stamp_then:
                return rows, made, True
        made = time.time() - CLOCK_MARGIN_S
        found = await graph.suggestions(self.ranking_pool, user_id, WEIGHTS, limit)
        rows = [{name: _plain(row[name]) for name in FIELDS} for row in found]
        if found:
            value = {"made": made, "stamp": list(graph.suggestion_stamp(found[0])), "rows": rows}
            await self.redis.set(key, msgpack.packb(value), ex=KEEP_S)
        return rows, made, False


# ------------------------------------------------------------ presenting: people with their reasons


def user_reason(raw: dict[str, Any], people: Mapping[int, UserSummary]) -> wire.UserReason:
    """A reason as ``reasons_of`` made it (people as ``user_ids``) as sent."""
    kind, score = raw["type"], raw["score"]
    if kind == "followed_by_following":
        return wire.FollowedByFollowingReason(users=people_in(raw, people), count=raw["count"], score=score)
    if kind == "follows_you":
        return wire.FollowsYouReason(score=score)
    if kind == "engaged_with":
        return wire.EngagedWithReason(count=raw["count"], score=score)
    if kind == "similar_follows":
        return wire.SimilarFollowsReason(users=people_in(raw, people), count=raw["count"], score=score)
    if kind == "shared_interests":
        return wire.SharedInterestsReason(interests=raw["interests"], count=raw["count"], score=score)
    if kind == "popular_in_interest":
        return wire.PopularInInterestReason(interest=raw["interest"], score=score)
    if kind == "popular":
        return wire.PopularReason(followers_count=raw["followers_count"], score=score)
    raise ValueError(f"a reason of an unknown type: {kind!r}")


async def suggestion_list(
    pool: asyncpg.Pool, base_url: str, user_id: int, rows: list[dict[str, Any]]
) -> wire.SuggestionList:
    """Suggestions as sent: each person (with whether they follow me and I them) and the people their reasons
    name, in one query; people gone since are left out."""
    why = [reasons_of(r) for r in rows]
    wanted = {int(r["user_id"]) for r in rows} | named_in(why)
    found = {int(p["id"]): p for p in await graph.users_with_flags(pool, user_id, list(wanted))}
    people = {uid: present.user_summary(p, base_url) for uid, p in found.items()}
    items = []
    for row, reasons in zip(rows, why, strict=True):
        person = found.get(int(row["user_id"]))
        if person is None:
            continue
        followed, follows = bool(person["followed_by_me"]), bool(person["follows_me"])
        items.append(
            wire.Suggestion(
                user=present.user_summary(person, base_url, followed_by_me=followed, follows_me=follows),
                reasons=[user_reason(raw, people) for raw in reasons],
                score=round(float(row["score"]), 6),
            )
        )
    return wire.SuggestionList(items=items)


def list_versions(keys: Any) -> list[str]:
    """What a cached list depends on (api/response_cache.py) besides what keeps it: the people shown."""
    return [live_cache.profiles_version_key(keys)]
