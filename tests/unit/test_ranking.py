"""Explore's ranking and who-to-follow's scoring (domain/ranking.py, api/reads/suggestions.py), without a server."""

from __future__ import annotations

import datetime as dt

import pytest

from api.reads.explore import Position
from api.reads.suggestions import reasons_of
from domain.ranking import Fact, Feedback, Knobs, Signals, quality, rank

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
        followed_slugs=tuple(s for s in slugs if s == "travel"),
        reacted=kw.get("reacted", False),
        judged=kw.get("judged", False),
        in_timeline=kw.get("in_timeline", False),
    )


def ranked_ids(facts: list[Fact], signals: dict[int, Signals], **kw: object) -> list[int]:
    args: dict[str, object] = {
        "viewer_id": ME,
        "signals": signals,
        "facts": facts,
        "feedback": Feedback(),
        "knobs": Knobs(),
        "now": NOW,
        **kw,
    }
    return [r.post_id for r in rank(**args)]  # type: ignore[arg-type]


def test_every_source_gives_its_reason_with_its_part_and_the_parts_make_the_relevance() -> None:
    signals = {10: Signals(engaged_by=[7, 8, 9, 11], similar=3, similar_weight=0.5, trend=1.0)}
    (item,) = rank(
        viewer_id=ME,
        signals=signals,
        facts=[fact(10, 2, slugs=("travel", "food"))],
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
    assert ranked_ids(facts, signals, feedback=feedback) == [6, 5]  # 6 is by someone I follow: "following"
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
    assert quality(0, 0, 1.0) == pytest.approx(2.0) and quality(0, 24, 1.0) == pytest.approx(1.0)


def test_feedback_on_interests_and_authors_moves_scores() -> None:
    facts = [fact(1, 5, slugs=("travel",)), fact(2, 6, slugs=("food",))]
    signals = {1: Signals(trend=1.0), 2: Signals(trend=1.0)}
    base = {
        r.post_id: r.score
        for r in rank(
            viewer_id=ME,
            signals=signals,
            facts=facts,
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


def test_a_suggestions_reasons_come_from_its_parts_largest_first_with_the_people_who_link() -> None:
    row = {
        "fof_part": 1.66,
        "fof_via": [2, 3, 4, 5],
        "fof_n": 3,
        "fan_part": 1.0,
        "engaged_part": 0,
        "engaged_n": None,
        "same_part": None,
        "same_via": None,
        "same_n": None,
        "shared_part": 0.6,
        "shared_slugs": ["pets", "travel"],
        "shared_n": 2,
        "topical_part": 0.4,
        "topical_slugs": ["space", "pets"],
        "popular_part": 0.05,
        "followers": 12,
    }
    reasons = reasons_of(row)
    assert [r["type"] for r in reasons] == [
        "followed_by_following",
        "follows_you",
        "shared_interests",
        "popular_in_interest",
        "popular",
    ]
    assert reasons[0] == {"type": "followed_by_following", "user_ids": [2, 3, 4], "count": 3, "score": 1.66}
    assert reasons[2]["interests"] == ["pets", "travel"] and reasons[3]["interest"] == "space"
    assert reasons[4] == {"type": "popular", "followers_count": 12, "score": 0.05}


def test_a_post_by_someone_i_follow_doubles_its_relevance_in_explore_and_is_left_out_of_the_feeds_tail() -> None:
    facts = [fact(1, 5, in_timeline=True), fact(2, 6)]
    signals = {1: Signals(engaged_by=[7]), 2: Signals(engaged_by=[7])}
    args: dict[str, object] = {"viewer_id": ME, "signals": signals, "facts": facts, "feedback": Feedback(),
                               "knobs": Knobs(), "now": NOW}  # fmt: skip
    first, second = rank(**args)  # type: ignore[arg-type]
    assert first.post_id == 1 and first.score == pytest.approx(2 * second.score, rel=1e-4)
    assert first.reasons[-1] == {"type": "following", "score": 1.0}
    assert [r.post_id for r in rank(**args, skip_followed=True)] == [2]  # type: ignore[arg-type]
