"""Explore, its feedback and knobs, and who-to-follow (issue 14).

Reads go straight to storage (the ranking: api/reads/explore.py and domain/ranking.py; people:
api/reads/suggestions.py); feedback and knobs are writes of the caller's UserShard entity. Each page is hydrated
with one query per kind (posts, the people named in reasons) and encoded once.
"""

from __future__ import annotations

import textwrap
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.contract import body, operation
from api.deps import Ctx, User, WriteLimit
from api.pagination import DEFAULT_LIMIT, Limit
from api.reads import explore, suggestions
from api.reads.explore import CURSOR_PATTERN, Position
from api.responses import Encoded, encoded, no_content
from domain import ops, ranking
from domain.errors import ValidationFailed
from domain.ranking import Ranked
from domain.wire.posts import Post
from domain.wire.recs import ExploreFeedback, ExplorePage, Knobs, KnobsUpdate, PostReason, SuggestionList

router = APIRouter(tags=["explore"])

ExploreCursor = Annotated[
    str | None, Query(max_length=24, pattern=CURSOR_PATTERN, description="The `next_cursor` of the previous page")
]

EXPLORE_DESCRIPTION = (
    "Posts picked for you, best first (ranked in stages: the most relevant candidates first, the rest after them "
    "as pages reach them), each with `reasons` (why) and `score`. The first page (no cursor) ranks "
    "anew, or is your latest ranking when it is less than a minute old and nothing it came from has changed since "
    "(your follows, interests, feedback, knobs and reactions, the engagement of people you follow, new posts in "
    "your interests); its `next_cursor` pages through that same ranking for 30 minutes (no re-ranking, no "
    "repeats), leaving out authors you said `less` to since. Candidates: posts of interests you follow, posts "
    "people you follow "
    "reacted to or commented on, posts popular with people who react like you, trending posts (last 24 h) and "
    "the newest posts.\n\n" + textwrap.indent(ranking.__doc__ or "", "    ")
)


async def recommended_posts(
    ctx: Ctx, user_id: int, ranked: list[Ranked]
) -> list[tuple[Post, Ranked, list[PostReason]]]:
    """The ranked posts still there, for the viewer, with their reasons (api/reads/explore.py
    ``recommended_posts``): explore's, and the home feed's past its timeline."""
    base_url = ctx.services.settings.public_base_url
    return await explore.recommended_posts(ctx.posts, ctx.services.pool, base_url, user_id, ranked)


@router.get(
    "/explore",
    **operation("getExplore", ok=ExplorePage, errors=(401, 422, 503)),
    description=EXPLORE_DESCRIPTION,
)
async def get_explore(
    request: Request, user: User, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: ExploreCursor = None
) -> Encoded:
    position = None
    if cursor is not None:
        position = Position.decode(cursor)
        if position is None:
            raise ValidationFailed({"cursor": "is not an explore cursor"})
    window = await ctx.explorer.page(user.user_id, "explore", position, limit)
    if position is not None or not window.items:
        return await _explore_page(request, ctx, user.user_id, window)
    # A first page is the same while its ranking is (a kept one, api/reads/explore.py) and its posts and the people
    # it shows are as they were: cached whole, checked against their versions (api/response_cache.py).
    keys = ctx.services.keys
    key = keys("rc", "explore", user.user_id, window.snapshot, limit)
    return await ctx.response_cache.serve(
        request,
        key,
        explore.first_page_versions(keys, window),
        None,
        lambda: _explore_page(request, ctx, user.user_id, window),
    )


async def _explore_page(request: Request, ctx: Ctx, user_id: int, window: explore.Window) -> Encoded:
    base_url = ctx.services.settings.public_base_url
    return encoded(request, await explore.explore_page(ctx.posts, ctx.services.pool, base_url, user_id, window))


@router.post(
    "/explore/feedback",
    **operation(
        "giveExploreFeedback",
        status=204,
        description="Recorded",
        request=ExploreFeedback,
        errors=(400, 401, 404, 415, 422, 429),
    ),
    dependencies=[WriteLimit],
)
async def explore_feedback(user: User, ctx: Ctx, payload: ExploreFeedback = body(ExploreFeedback)) -> Response:
    """Steer explore: `less` drops that post and its author from your explore pages (until you say `more` of
    them as often) and halves the weight of its interests; `more` raises its author (x1.5 a signal, at most x3)
    and doubles its interests' weight. The post itself is not shown again. One signal per post: the latest
    counts. An unknown post is 404."""
    op = ops.GiveExploreFeedback(user_id=user.user_id, post_id=int(payload.post_id), signal=payload.signal)
    await ctx.users.call(op)
    return no_content()


@router.get("/me/recommendations", **operation("getRecommendationKnobs", ok=Knobs, errors=(401,)))
async def get_knobs(request: Request, user: User, ctx: Ctx) -> Encoded:
    """Your recommendation knobs: `recency_weight` (0 ranks by engagement only, 1 by freshness only),
    `hide_reposts` (your home feed without reposts) and `per_author_cap` (posts of one author per ranking)."""
    return encoded(request, await explore.knobs(ctx.services.pool, user.user_id))


@router.put(
    "/me/recommendations",
    **operation("setRecommendationKnobs", ok=Knobs, request=KnobsUpdate, errors=(400, 401, 415, 422, 429)),
    dependencies=[WriteLimit],
)
async def put_knobs(request: Request, user: User, ctx: Ctx, payload: KnobsUpdate = body(KnobsUpdate)) -> Encoded:
    """Change some or all knobs (the others keep their values); returns them all."""
    op = ops.SetRecommendationKnobs(
        user_id=user.user_id,
        recency_weight=payload.recency_weight,
        hide_reposts=payload.hide_reposts,
        per_author_cap=payload.per_author_cap,
    )
    return encoded(request, await ctx.users.call(op))


@router.get("/suggestions/users", **operation("listSuggestedUsers", ok=SuggestionList, errors=(401, 422, 503)))
async def suggested_users(request: Request, user: User, ctx: Ctx, limit: Limit = DEFAULT_LIMIT) -> Encoded:
    """People you may want to follow, best first, each with why (see the reason types): people followed by
    people you follow (with how many), people who follow you, authors you engage with, people who follow whom you
    follow, people who share your interests, people popular in your interests, and popular people. Never you,
    never someone you already follow. `score` is the sum of the reasons' parts. Your latest suggestions serve
    your next request for up to a minute while nothing they came from changed (your follows and followers, your
    interests and engagement, the follows of and to people you follow)."""
    rows, made, kept = await ctx.suggester.rows(user.user_id, limit)
    if not rows:
        return encoded(request, SuggestionList(items=[]))
    if not kept:
        return await _suggestions_page(request, ctx, user.user_id, rows)
    # The kept list (api/reads/suggestions.py: the same one while it was made at the same time) shows the same while
    # the people in it are as they were: cached whole, checked against the user summaries' version
    # (api/response_cache.py). Whether they follow me or I them is part of what keeps the list (my follows and
    # followers). A list just made is not looked up (its key is new: a certain miss); its next request caches it.
    keys = ctx.services.keys
    key = keys("rc", "suggestions", user.user_id, limit, repr(made))
    return await ctx.response_cache.serve(
        request,
        key,
        suggestions.list_versions(keys),
        None,
        lambda: _suggestions_page(request, ctx, user.user_id, rows),
    )


async def _suggestions_page(request: Request, ctx: Ctx, user_id: int, rows: list[dict[str, Any]]) -> Encoded:
    base_url = ctx.services.settings.public_base_url
    return encoded(request, await suggestions.suggestion_list(ctx.services.pool, base_url, user_id, rows))
