"""Explore's ranking and who-to-follow's scoring (actors/ranking.py, actors/suggestions.py), without a server."""

from __future__ import annotations

import datetime as dt

import pytest

from actors.explore import Position
from actors.ranking import Fact, Feedback, Knobs, Signals, quality, rank
from actors.suggestions import rank_people

NOW = dt.datetime(2026, 12, 5, 12, tzinfo=dt.UTC)
ME = 1


def fact(
    post_id: int, author: int, *, hours: float = 1, engagement: int = 0, slugs: tuple[str, ...] = (), **kw: bool
) -> Fact:
    return Fact(
        post_id=post_id,
        author_id=author,
        created_at=NOW - dt.timedelta(hours=hours),
        engagement=engagement,
        slugs=slugs,
        reacted=kw.get("reacted", False),
        judged=kw.get("judged", False),
        in_timeline=kw.get("in_timeline", False),
    )


def ranked_ids(facts: list[Fact], signals: dict[int, Signals], **kw: object) -> list[int]:
    args: dict[str, object] = {
        "viewer_id": ME,
        "signals": signals,
        "facts": facts,
        "followed_interests": {"travel"},
        "feedback": Feedback(),
        "knobs": Knobs(),
        "now": NOW,
        **kw,
    }
    return [r.post_id for r in rank(**args)]  # type: ignore[arg-type]


def test_every_source_gives_its_reason_with_its_part_and_the_parts_make_the_relevance() -> None:
    signals = {10: Signals(engaged_by=[7, 8, 9, 11], similar=3, trend=5.0)}
    (item,) = rank(
        viewer_id=ME,
        signals=signals,
        facts=[fact(10, 2, slugs=("travel", "food"))],
        followed_interests={"travel"},
        feedback=Feedback(),
        knobs=Knobs(recency_weight=0.0),
        now=NOW,
    )
    kinds = {r["type"]: r for r in item.reasons}
    assert kinds["interest"] == {"type": "interest", "interest": "travel", "score": 1.0}
    assert kinds["engaged_by_following"]["user_ids"] == [7, 8, 9] and kinds["engaged_by_following"]["count"] == 4
    assert kinds["similar_users"]["count"] == 3 and kinds["trending"]["score"] == pytest.approx(0.6)
    relevance = sum(r["score"] for r in item.reasons)
    assert item.score == pytest.approx(relevance * quality(0, 1, 0.0), rel=1e-4)


def test_a_recent_post_has_a_reason_only_when_nothing_else_explains_it() -> None:
    signals = {1: Signals(recent=True), 2: Signals(recent=True, trend=1.0)}
    items = rank(
        viewer_id=ME,
        signals=signals,
        facts=[fact(1, 5), fact(2, 6)],
        followed_interests=set(),
        feedback=Feedback(),
        knobs=Knobs(),
        now=NOW,
    )
    reasons = {r.post_id: [x["type"] for x in r.reasons] for r in items}
    assert reasons == {1: ["recent"], 2: ["trending"]}


def test_my_posts_posts_i_reacted_to_or_judged_and_blocked_authors_are_never_ranked() -> None:
    facts = [
        fact(1, ME),
        fact(2, 5, reacted=True),
        fact(3, 5, judged=True),
        fact(4, 6),
        fact(5, 7),
        fact(6, 8, in_timeline=True),
    ]
    signals = {f.post_id: Signals(trend=1.0) for f in facts}
    feedback = Feedback(authors={6: -1, 7: 1})
    assert ranked_ids(facts, signals, feedback=feedback) == [5, 6]
    assert ranked_ids(facts, signals, feedback=feedback, skip_followed=True) == [5]
    assert ranked_ids(facts, signals, feedback=Feedback(authors={6: -1, 7: -1, 8: 2})) == [6]


def test_at_most_per_author_cap_posts_of_one_author() -> None:
    facts = [fact(i, 5, hours=i) for i in range(1, 6)] + [fact(10, 6)]
    signals = {f.post_id: Signals(trend=1.0) for f in facts}
    assert ranked_ids(facts, signals) == [10, 1, 2] or ranked_ids(facts, signals) == [1, 10, 2]
    assert len(ranked_ids(facts, signals, knobs=Knobs(per_author_cap=1))) == 2
    assert len(ranked_ids(facts, signals, knobs=Knobs(per_author_cap=10))) == 6


def test_recency_weight_trades_freshness_for_engagement() -> None:
    old_popular = fact(1, 5, hours=72, engagement=500)
    fresh_quiet = fact(2, 6, hours=0.1, engagement=0)
    signals = {1: Signals(trend=1.0), 2: Signals(trend=1.0)}
    facts = [old_popular, fresh_quiet]
    assert ranked_ids(facts, signals, knobs=Knobs(recency_weight=0.0)) == [1, 2]
    assert ranked_ids(facts, signals, knobs=Knobs(recency_weight=1.0)) == [2, 1]
    assert quality(0, 0, 1.0) == pytest.approx(4.0) and quality(0, 24, 1.0) == pytest.approx(2.0)


def test_feedback_on_interests_and_authors_moves_scores() -> None:
    facts = [fact(1, 5, slugs=("travel",)), fact(2, 6, slugs=("food",))]
    signals = {1: Signals(trend=1.0), 2: Signals(trend=1.0)}
    base = {
        r.post_id: r.score
        for r in rank(
            viewer_id=ME,
            signals=signals,
            facts=facts,
            followed_interests=set(),
            feedback=Feedback(),
            knobs=Knobs(),
            now=NOW,
        )
    }
    steered = {
        r.post_id: r.score
        for r in rank(
            viewer_id=ME,
            signals=signals,
            facts=facts,
            followed_interests=set(),
            feedback=Feedback(authors={6: 10}, interests={"travel": -1}),
            knobs=Knobs(),
            now=NOW,
        )
    }
    assert steered[1] == pytest.approx(base[1] / 2)  # "less" on travel halves it
    assert steered[2] == pytest.approx(base[2] * 3)  # "more" on the author, capped at x3


def test_explore_cursors_round_trip_and_anything_else_is_no_cursor() -> None:
    position = Position("0123456789abcdef", 40)
    assert Position.decode(position.encode()) == position
    for bad in ("", "r0123.1", "r0123456789abcdeg.1", "0123456789abcdef.1", "r0123456789abcdef.1000", "1-2"):
        assert Position.decode(bad) is None


def row(source: str, user: int, n: int = 1, via: list[int] | None = None, slugs: list[str] | None = None) -> dict:
    return {"source": source, "user_id": user, "n": n, "via": via, "slugs": slugs}


def test_people_are_merged_across_sources_and_ranked_by_the_sum_of_their_reasons() -> None:
    rows = [
        row("fof", 10, 3, via=[2, 3, 4]),
        row("fans", 10),
        row("fof", 11, 1, via=[2]),
        row("shared", 12, 2, slugs=["pets", "travel"]),
        row("popular", 13, 1000),
        row("popular", 10, 10),
        row("topical", 14, 1, slugs=["space"]),
        row("engaged", 15, 4),
        row("same", 16, 2, via=[5, 6]),
    ]
    people = rank_people(rows, 10)
    assert people[0].user_id == 10
    assert [r["type"] for r in people[0].reasons] == ["followed_by_following", "follows_you", "popular"]
    assert people[0].reasons[0]["user_ids"] == [2, 3, 4] and people[0].reasons[0]["count"] == 3
    scores = [p.score for p in people]
    assert scores == sorted(scores, reverse=True)
    assert {p.user_id for p in people} == {10, 11, 12, 13, 14, 15, 16}
    assert next(p for p in people if p.user_id == 13).reasons == [
        {"type": "popular", "followers_count": 1000, "score": 0.2}
    ]
    assert [p.user_id for p in rank_people(rows, 2)] == [p.user_id for p in people[:2]]
