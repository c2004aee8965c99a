"""Explore's and who-to-follow's statements hold their limits and weights in their text (storage/recs.py
``candidates_statement``, storage/graph.py ``suggestions_statement``), so that the api's ranking pool runs them on
one generic plan per connection (storage/db.py GENERIC_SETTINGS): only the user, the post id floors and the page
size are parameters, and the generic plan answers exactly what a plan made for each call answers."""

from __future__ import annotations

import re

import asyncpg
import pytest

from api.reads import explore, suggestions
from storage import graph, recs
from storage.db import GENERIC_SETTINGS, PLANNED_SETTINGS, literals
from tests.storage.test_graph import _users


def _parameters(statement: str) -> set[str]:
    return set(re.findall(r"\$\d+", statement))


def test_the_statements_take_only_the_user_the_floors_and_the_page_size() -> None:
    candidates = recs.candidates_statement(explore.LIMITS, explore.WEIGHTS)
    assert _parameters(candidates) == {"$1", "$2", "$3"}
    assert f"LIMIT {explore.LIMITS.shortlist})" in candidates and "{" not in candidates
    people = graph.suggestions_statement(suggestions.WEIGHTS, graph.SuggestionSizes(200, 50, 200, 100, 50))
    assert _parameters(people) == {"$1", "$2"}
    assert "LIMIT 50)" in people and "LIMIT 200)" in people and "{" not in people


async def test_a_generic_plan_answers_as_a_plan_for_each_call(db: asyncpg.Pool, database_url: str) -> None:
    me, friend, fof, fan, other = await _users(db, 5)
    async with db.acquire() as conn:
        for follower, followee in [(me, friend), (friend, fof), (other, fof), (fan, me), (me, other)]:
            await graph.add_follow(conn, follower, followee)
        await conn.execute(
            "INSERT INTO interest_follows (user_id, slug) VALUES ($1, 'travel'), ($2, 'travel')", me, fan
        )
    generic = await asyncpg.create_pool(database_url, min_size=1, max_size=1, server_settings=GENERIC_SETTINGS)
    planned = await asyncpg.create_pool(database_url, min_size=1, max_size=1, server_settings=PLANNED_SETTINGS)
    assert generic is not None and planned is not None
    try:
        assert await generic.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        for _ in range(3):  # the same prepared statement each time: its one generic plan
            by_generic = await graph.suggestions(generic, me, suggestions.WEIGHTS, 20)
            by_planned = await graph.suggestions(planned, me, suggestions.WEIGHTS, 20)
            assert [dict(r) for r in by_generic] == [dict(r) for r in by_planned]
            ranked, _ = await explore.Explorer(generic, None, None).ranking(me, skip_followed=False)
            again, _ = await explore.Explorer(planned, None, None).ranking(me, skip_followed=False)
            assert [r.post_id for r in ranked] == [r.post_id for r in again]
        people = [int(r["user_id"]) for r in by_generic]
        assert fof in people and fan in people  # followed by two people I follow; follows me
        assert me not in people and friend not in people and other not in people
    finally:
        await generic.close()
        await planned.close()


def test_only_numbers_reach_a_statements_text() -> None:
    assert literals("w_", explore.WEIGHTS)["w_interest"] == repr(float(explore.WEIGHTS.interest))
    assert literals("", explore.LIMITS)["shortlist"] == str(explore.LIMITS.shortlist)
    for bad in ("1) OR (1", True, None):
        with pytest.raises(TypeError):
            literals("", graph.SuggestionSizes(200, 50, bad, 100, 50))  # type: ignore[arg-type]
