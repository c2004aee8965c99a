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

from api import presenters
from api.deps import Ctx, User, WriteLimit
from api.pagination import DEFAULT_LIMIT, Limit
from api.reads import explore, suggestions
from api.reads.explore import CURSOR_PATTERN, Position
from api.responses import Encoded, encoded, no_content
from api.schemas.common import error_responses
from api.schemas.recs import ExplorePage, Feedback, Knobs, KnobsUpdate, SuggestionList
from domain import ops, ranking
from domain.errors import ValidationFailed
from domain.ranking import Ranked
from storage import graph as graph_store
from storage import live_cache
from storage import users as user_store
from storage.views import public_post

router = APIRouter(tags=["explore"])

ExploreCursor = Annotated[
    str | None, Query(max_length=24, pattern=CURSOR_PATTERN, description="The `next_cursor` of the previous page")
]

EXPLORE_DESCRIPTION = (
    "Posts picked for you, best first, each with `reasons` (why) and `score`. The first page (no cursor) ranks "
    "anew, or is your latest ranking when it is less than a minute old and nothing it came from has changed since "
    "(your follows, interests, feedback, knobs and reactions, the engagement of people you follow, new posts in "
    "your interests); its `next_cursor` pages through that same ranking for 30 minutes (no re-ranking, no "
    "repeats), leaving out authors you said `less` to since. Candidates: posts of interests you follow, posts "
    "people you follow "
    "reacted to or commented on, posts popular with people who react like you, trending posts (last 24 h) and "
    "the newest posts.\n\n" + textwrap.indent(ranking.__doc__ or "", "    ")
)


def named_in(reasons_lists: list[list[dict[str, Any]]]) -> set[int]:
    """The people these reasons name (``user_ids``)."""
    return {int(u) for reasons in reasons_lists for r in reasons for u in r.get("user_ids", ())}


async def render_reasons(
    ctx: Ctx, reasons_lists: list[list[dict[str, Any]]], people: dict[int, Any] | None = None
) -> list[list[dict[str, Any]]]:
    """Reasons as sent: the people a reason names (``user_ids``) become UserSummaries, one query for all (none
    when ``people`` already holds their rows)."""
    if people is None:
        wanted = named_in(reasons_lists)
        found = await user_store.get_users(ctx.services.pool, list(wanted)) if wanted else []
        people = {int(p["id"]): p for p in found}
    out = []
    for reasons in reasons_lists:
        shown = []
        for reason in reasons:
            if "user_ids" in reason:
                named = [presenters.user_summary(people[u]) for u in reason["user_ids"] if u in people]
                reason = {k: v for k, v in reason.items() if k != "user_ids"} | {"users": named}
            shown.append(reason)
        out.append(shown)
    return out


async def recommended_posts(ctx: Ctx, user_id: int, ranked: list[Ranked]) -> list[tuple[dict[str, Any], Ranked, Any]]:
    """The ranked posts still there, hydrated for the viewer: (post view, ranked item, reasons as sent)."""
    services = ctx.services
    views = await ctx.posts.views(services.pool, [r.post_id for r in ranked], user_id)
    kept = [r for r in ranked if r.post_id in views]
    reasons = await render_reasons(ctx, [r.reasons for r in kept])
    return [(views[r.post_id], r, why) for r, why in zip(kept, reasons, strict=True)]


@router.get(
    "/explore",
    response_model=ExplorePage,
    responses=error_responses(401, 422, 503),
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
    versions = [live_cache.version_key(keys, r.post_id) for r in window.items]
    versions.append(live_cache.profiles_version_key(keys))
    return await ctx.response_cache.serve(
        request, key, versions, None, lambda: _explore_page(request, ctx, user.user_id, window)
    )


async def _explore_page(request: Request, ctx: Ctx, user_id: int, window: explore.Window) -> Encoded:
    items = [
        {"post": public_post(view), "reasons": why, "score": item.score}
        for view, item, why in await recommended_posts(ctx, user_id, window.items)
    ]
    following = window.following
    return encoded(request, {"items": items, "next_cursor": None if following is None else following.encode()})


@router.post(
    "/explore/feedback",
    status_code=204,
    responses=error_responses(400, 401, 404, 415, 422, 429),
    dependencies=[WriteLimit],
)
async def explore_feedback(body: Feedback, user: User, ctx: Ctx) -> Response:
    """Steer explore: `less` drops that post and its author from your explore pages (until you say `more` of
    them as often) and halves the weight of its interests; `more` raises its author (x1.5 a signal, at most x3)
    and doubles its interests' weight. The post itself is not shown again. One signal per post: the latest
    counts. An unknown post is 404."""
    await ctx.users.call(ops.GiveExploreFeedback(user_id=user.user_id, post_id=int(body.post_id), signal=body.signal))
    return no_content()


@router.get("/me/recommendations", response_model=Knobs, responses=error_responses(401))
async def get_knobs(request: Request, user: User, ctx: Ctx) -> Encoded:
    """Your recommendation knobs: `recency_weight` (0 ranks by engagement only, 1 by freshness only),
    `hide_reposts` (your home feed without reposts) and `per_author_cap` (posts of one author per ranking)."""
    return encoded(request, (await explore.get_knobs(ctx.services.pool, user.user_id)).to_wire())


@router.put(
    "/me/recommendations",
    response_model=Knobs,
    responses=error_responses(400, 401, 415, 422, 429),
    dependencies=[WriteLimit],
)
async def put_knobs(request: Request, body: KnobsUpdate, user: User, ctx: Ctx) -> Encoded:
    """Change some or all knobs (the others keep their values); returns them all."""
    op = ops.SetRecommendationKnobs(
        user_id=user.user_id,
        recency_weight=body.recency_weight,
        hide_reposts=body.hide_reposts,
        per_author_cap=body.per_author_cap,
    )
    return encoded(request, await ctx.users.call(op))


@router.get("/suggestions/users", response_model=SuggestionList, responses=error_responses(401, 422, 503))
async def suggested_users(request: Request, user: User, ctx: Ctx, limit: Limit = DEFAULT_LIMIT) -> Encoded:
    """People you may want to follow, best first, each with why (see the reason types): people followed by
    people you follow (with how many), people who follow you, authors you engage with, people who follow whom you
    follow, people who share your interests, people popular in your interests, and popular people. Never you,
    never someone you already follow. `score` is the sum of the reasons' parts. Your latest suggestions serve
    your next request for up to a minute while nothing they came from changed (your follows and followers, your
    interests and engagement, the follows of and to people you follow)."""
    rows, made, kept = await ctx.suggester.rows(user.user_id, limit)
    if not rows:
        return encoded(request, {"items": []})
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
        [live_cache.profiles_version_key(keys)],
        None,
        lambda: _suggestions_page(request, ctx, user.user_id, rows),
    )


async def _suggestions_page(request: Request, ctx: Ctx, user_id: int, rows: list[dict[str, Any]]) -> Encoded:
    why = [suggestions.reasons_of(r) for r in rows]
    wanted = {int(r["user_id"]) for r in rows} | named_in(why)
    people = {int(p["id"]): p for p in await graph_store.users_with_flags(ctx.services.pool, user_id, list(wanted))}
    kept = [(r, w) for r, w in zip(rows, why, strict=True) if int(r["user_id"]) in people]
    reasons = await render_reasons(ctx, [w for _, w in kept], people)
    items = []
    for (row, _), shown in zip(kept, reasons, strict=True):
        person = people[int(row["user_id"])]
        followed, follows = bool(person["followed_by_me"]), bool(person["follows_me"])
        summary = presenters.user_summary(person, followed_by_me=followed, follows_me=follows)
        items.append({"user": summary, "reasons": shown, "score": round(float(row["score"]), 6)})
    return encoded(request, {"items": items})
