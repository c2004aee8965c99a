"""Interests (topics): the catalogue, following them, an interest's posts (issue 14).

Reads go straight to storage; follow and unfollow go through the caller's UserShard entity (actors/user.py), which
changes the follows row and the interest's ``followers_count`` in one transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from api.deps import Ctx, MaybeUser, User, WriteLimit
from api.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor
from api.responses import Encoded, encoded
from api.routes.posts import _page as post_page
from api.routes.users import OPTIONAL_BEARER
from api.schemas.common import error_responses
from api.schemas.posts import PostPage
from api.schemas.recs import Interest, InterestPage
from api.schemas.users import FollowState
from domain import ops
from domain.errors import NotFound
from storage import interests as store

router = APIRouter(tags=["interests"])

Slug = Annotated[str, Path(min_length=1, max_length=64, description="An interest's slug (any case)")]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def interest(row: Any) -> dict[str, Any]:
    return {
        "slug": row["slug"],
        "name": row["name"],
        "followers_count": int(row["followers_count"]),
        "followed_by_me": bool(row["followed_by_me"]),
    }


def _slug(value: str) -> str:
    return value.strip().lower()


@router.get(
    "/interests", response_model=InterestPage, responses=error_responses(401, 422), openapi_extra=OPTIONAL_BEARER
)
async def list_interests(
    request: Request, viewer: MaybeUser, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Encoded:
    """The catalogue of interests in its fixed order, with `followed_by_me` for the caller (false without a
    token). A post belongs to an interest when its caption has the slug as a hashtag (`#travel`), one of the
    interest's other hashtags, or one of its keywords; it is tagged when it is created."""
    position = decode_cursor(cursor)
    after = None if position is None else position[1]
    rows = await store.list_interests(ctx.services.pool, None if viewer is None else viewer.user_id, after, limit + 1)
    more, rows = len(rows) > limit, rows[:limit]
    next_cursor = encode_cursor(_EPOCH, int(rows[-1]["position"])) if more and rows else None
    return encoded(request, {"items": [interest(r) for r in rows], "next_cursor": next_cursor})


@router.get(
    "/interests/{slug}", response_model=Interest, responses=error_responses(401, 404), openapi_extra=OPTIONAL_BEARER
)
async def get_interest(request: Request, slug: Slug, viewer: MaybeUser, ctx: Ctx) -> Encoded:
    row = await store.find_interest(ctx.services.pool, _slug(slug), None if viewer is None else viewer.user_id)
    if row is None:
        raise NotFound("No such interest.")
    return encoded(request, interest(row))


@router.get(
    "/interests/{slug}/posts",
    response_model=PostPage,
    responses=error_responses(401, 404, 422),
    openapi_extra=OPTIONAL_BEARER,
)
async def interest_posts(
    request: Request, slug: Slug, viewer: MaybeUser, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Encoded:
    """The interest's posts, newest first."""
    pool = ctx.services.pool
    name = _slug(slug)
    if not await store.exists(pool, name):
        raise NotFound("No such interest.")
    rows = await store.post_page(pool, name, decode_cursor(cursor), limit + 1)
    return encoded(request, await post_page(ctx, viewer, rows, limit))


async def _follow(request: Request, ctx: Ctx, user: Any, slug: str, on: bool) -> Encoded:
    following = await ctx.users.call(ops.FollowInterest(user_id=user.user_id, slug=_slug(slug), on=on))
    return encoded(request, {"following": following})


@router.put(
    "/interests/{slug}/follow",
    response_model=FollowState,
    responses=error_responses(401, 404, 429),
    dependencies=[WriteLimit],
)
async def follow_interest(request: Request, slug: Slug, user: User, ctx: Ctx) -> Encoded:
    """Follow an interest (idempotent): its posts come to your explore page with an `interest` reason."""
    return await _follow(request, ctx, user, slug, True)


@router.delete(
    "/interests/{slug}/follow",
    response_model=FollowState,
    responses=error_responses(401, 404, 429),
    dependencies=[WriteLimit],
)
async def unfollow_interest(request: Request, slug: Slug, user: User, ctx: Ctx) -> Encoded:
    """Stop following an interest (idempotent: `following` false whether or not you did)."""
    return await _follow(request, ctx, user, slug, False)


@router.get("/me/interests", response_model=InterestPage, responses=error_responses(401, 422))
async def my_interests(
    request: Request, user: User, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Encoded:
    """The interests you follow, newest follow first."""
    rows = await store.my_interests(ctx.services.pool, user.user_id, decode_cursor(cursor), limit + 1)
    more, rows = len(rows) > limit, rows[:limit]
    last = rows[-1] if rows else None
    next_cursor = encode_cursor(last["followed_at"], int(last["position"])) if more and last is not None else None
    return encoded(request, {"items": [interest(r) for r in rows], "next_cursor": next_cursor})
