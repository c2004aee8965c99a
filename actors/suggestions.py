"""Who to follow (issue 14): candidates from the graph (storage/graph.py ``suggestion_sources``), scored and
explained, plain Python.

    source                   reason                                                  part of the score
    people I follow follow   {"type": "followed_by_following", "users", "count": n}   1.2 x ln(1 + n)
    they follow me           {"type": "follows_you"}                                  1.0
    I engage with their posts {"type": "engaged_with", "count": n}                    0.8 x ln(1 + n)
    they follow whom I follow {"type": "similar_follows", "users", "count": n}       0.5 x ln(1 + n)
    shared interests         {"type": "shared_interests", "interests", "count": n}    0.3 x n
    popular in my interests  {"type": "popular_in_interest", "interest"}             0.4
    popular                  {"type": "popular", "followers_count"}                   0.2 x ln(1 + f) / ln(1 + top f)

``score`` is the sum of the parts; each reason carries its part as ``score``. Never myself, never someone I
already follow (the query leaves them out). ``users`` holds up to 3 people who make the link.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Person:
    user_id: int
    reasons: list[dict[str, Any]] = field(default_factory=list)

    @property
    def score(self) -> float:
        return round(sum(float(r["score"]) for r in self.reasons), 6)


def _part(weight: float, n: float) -> float:
    return round(weight * math.log1p(max(n, 0)), 4)


def rank_people(rows: Iterable[Any], limit: int) -> list[Person]:
    """Merge the source rows per person and rank: best first, ties by the smaller id (older account)."""
    rows = list(rows)
    top_followers = max((int(r["n"]) for r in rows if r["source"] == "popular"), default=0)
    people: dict[int, Person] = {}
    for row in rows:
        person = people.setdefault(int(row["user_id"]), Person(int(row["user_id"])))
        reason = _reason(row, top_followers)
        if reason is not None and all(r["type"] != reason["type"] for r in person.reasons):
            person.reasons.append(reason)
    ranked = [p for p in people.values() if p.score > 0]
    ranked.sort(key=lambda p: (-p.score, p.user_id))
    for person in ranked:
        person.reasons.sort(key=lambda r: -r["score"])
    return ranked[:limit]


def _reason(row: Any, top_followers: int) -> dict[str, Any] | None:
    source, n = row["source"], int(row["n"])
    via = [int(v) for v in (row["via"] or [])]
    slugs = list(row["slugs"] or [])
    if source == "fof":
        return {"type": "followed_by_following", "user_ids": via, "count": n, "score": _part(1.2, n)}
    if source == "fans":
        return {"type": "follows_you", "score": 1.0}
    if source == "engaged":
        return {"type": "engaged_with", "count": n, "score": _part(0.8, n)}
    if source == "same":
        return {"type": "similar_follows", "user_ids": via, "count": n, "score": _part(0.5, n)}
    if source == "shared":
        return {"type": "shared_interests", "interests": slugs[:5], "count": n, "score": round(0.3 * n, 4)}
    if source == "topical" and slugs:
        return {"type": "popular_in_interest", "interest": slugs[0], "score": 0.4}
    if source == "popular" and top_followers > 0:
        score = round(0.2 * math.log1p(n) / math.log1p(top_followers), 4)
        return {"type": "popular", "followers_count": n, "score": score} if score > 0 else None
    return None
