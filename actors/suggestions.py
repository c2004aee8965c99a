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
already follow. ``users`` holds up to 3 people who make the link (as user ids here, ``user_ids``, until the
route renders them).
"""

from __future__ import annotations

from typing import Any

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
