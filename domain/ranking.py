"""Explore's ranking (issue 14), plain Python: candidates from several sources, merged, scored, explained.

Each source gives a candidate post a part of its relevance, with a reason that says why:

    interest               a followed interest the post belongs to          1.0 each
    engaged_by_following   n people I follow reacted or commented           1.0 x n
    similar_users          n people who react like me reacted               3.0 x s
    trending               trending in the last 24 h                        0.6 x its trend score / the top one's
    recent                 among the newest posts (when nothing else)       0.1
    following              by someone I follow (explore only)               as much as the other parts together

    relevance = the sum of the parts
    quality   = (1 - w) x (1 + 0.2 x ln(1 + engagement)) + w x 2 x 0.5^(age hours / 24)   (w: recency_weight)
    score     = relevance x quality x author x topics
    author    = 1 + 0.5 x the net "more" on the author (at most 3)
    topics    = 2^(the net feedback on the post's interests, between -3 and 2)

with engagement = reactions + 2 x comments + 3 x reposts; "people who react like me" are those who reacted to most
of the posts I reacted to lately (a post in common counting 1 / ln(2 + its reactions)), and s is the sum of what
those n people have in common with me. Never shown: my own posts, posts I reacted to or gave feedback on, authors I said
"less" to more often than "more", and (in the feed, past my timeline) posts already in it (by people I follow, or
reposted by them). The weights were chosen on the synthetic network of benchmarks/recs.py (docs/PERFORMANCE.md).
At most ``per_author_cap`` posts of one author in a ranking, so in any page of it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

W_INTEREST = 1.0
W_ENGAGED = 1.0
W_SIMILAR = 3.0
W_TRENDING = 0.6
W_RECENT = 0.1
W_ENGAGEMENT = 0.2
FRESH_SCALE = 2.0
HALF_LIFE_H = 24.0
MAX_AUTHOR_BOOST = 3.0


@dataclass(frozen=True)
class Knobs:
    recency_weight: float = 0.3
    hide_reposts: bool = False
    per_author_cap: int = 2

    def to_wire(self) -> dict[str, Any]:
        return {
            "recency_weight": round(self.recency_weight, 4),
            "hide_reposts": self.hide_reposts,
            "per_author_cap": self.per_author_cap,
        }


@dataclass
class Signals:
    """What the sources found for one post."""

    engaged_by: list[int] = field(default_factory=list)  # followees who reacted or commented
    similar: int = 0  # peers who reacted
    similar_weight: float = 0.0  # what those peers have in common with me, summed
    trend: float = 0.0  # the precomputed trend score over the top one's (0-1)
    recent: bool = False
    interest: bool = False  # found through a followed interest


@dataclass(frozen=True)
class Fact:
    post_id: int
    author_id: int
    created_at: dt.datetime
    engagement: int
    slugs: tuple[str, ...]  # the post's interests
    followed_slugs: tuple[str, ...]  # those of them the caller follows
    reacted: bool
    judged: bool
    in_timeline: bool  # the caller follows its author or someone who reposted it


@dataclass(frozen=True)
class Ranked:
    post_id: int
    author_id: int
    score: float
    reasons: list[dict[str, Any]]  # engaged_by_following carries user ids in "user_ids" until rendered


@dataclass(frozen=True)
class Feedback:
    authors: dict[int, int] = field(default_factory=dict)  # author -> net signal
    interests: dict[str, int] = field(default_factory=dict)  # slug -> net signal

    def blocked(self, author_id: int) -> bool:
        return self.authors.get(author_id, 0) < 0


def quality(engagement: int, age_hours: float, recency_weight: float) -> float:
    w = min(max(recency_weight, 0.0), 1.0)
    fresh: float = FRESH_SCALE * 0.5 ** (max(age_hours, 0.0) / HALF_LIFE_H)
    return (1 - w) * (1 + W_ENGAGEMENT * math.log1p(max(engagement, 0))) + w * fresh


def rank(
    *,
    viewer_id: int,
    signals: dict[int, Signals],
    facts: Iterable[Fact],
    feedback: Feedback,
    knobs: Knobs,
    now: dt.datetime,
    skip_followed: bool = False,
    limit: int = 300,
) -> list[Ranked]:
    """The ranked list: best first, ties by newer post; at most ``knobs.per_author_cap`` per author."""
    scored: list[Ranked] = []
    for fact in facts:
        if fact.author_id == viewer_id or fact.reacted or fact.judged or feedback.blocked(fact.author_id):
            continue
        if skip_followed and fact.in_timeline:
            continue
        found = signals.get(fact.post_id)
        if found is None:
            continue
        reasons = _reasons(fact, found, following=not skip_followed)
        relevance = sum(r["score"] for r in reasons)
        if relevance <= 0:
            continue
        age_h = (now - fact.created_at).total_seconds() / 3600
        boost = 1 + min(0.5 * max(feedback.authors.get(fact.author_id, 0), 0), MAX_AUTHOR_BOOST - 1)
        topics = 2.0 ** max(-3, min(2, sum(feedback.interests.get(slug, 0) for slug in fact.slugs)))
        score = relevance * quality(fact.engagement, age_h, knobs.recency_weight) * boost * topics
        scored.append(Ranked(fact.post_id, fact.author_id, round(score, 6), reasons))
    scored.sort(key=lambda r: (-r.score, -r.post_id))
    out: list[Ranked] = []
    per_author: dict[int, int] = {}
    for item in scored:
        if per_author.get(item.author_id, 0) >= knobs.per_author_cap:
            continue
        per_author[item.author_id] = per_author.get(item.author_id, 0) + 1
        out.append(item)
        if len(out) == limit:
            break
    return out


def _reasons(fact: Fact, found: Signals, *, following: bool) -> list[dict[str, Any]]:
    reasons: list[dict[str, Any]] = []
    for slug in fact.followed_slugs:
        reasons.append({"type": "interest", "interest": slug, "score": W_INTEREST})
    if found.engaged_by:
        n = len(found.engaged_by)
        reasons.append(
            {"type": "engaged_by_following", "user_ids": found.engaged_by[:3], "count": n, "score": W_ENGAGED * n}
        )
    if found.similar:
        part = round(W_SIMILAR * found.similar_weight, 4)
        reasons.append({"type": "similar_users", "count": found.similar, "score": part})
    if found.trend > 0:
        reasons.append({"type": "trending", "score": round(W_TRENDING * found.trend, 4)})
    if found.recent and not reasons:
        reasons.append({"type": "recent", "score": W_RECENT})
    if following and fact.in_timeline and reasons:
        reasons.append({"type": "following", "score": round(sum(r["score"] for r in reasons), 4)})
    return reasons


def knobs_of(row: Any) -> Knobs:
    """The knobs of a stored row (storage/recs.py ``get_knobs``), or the defaults when there is none."""
    if row is None:
        return Knobs()
    return Knobs(float(row["recency_weight"]), bool(row["hide_reposts"]), int(row["per_author_cap"]))
