"""Interests (topics): the catalogue, following them, an interest's posts (issue 14).

Reads go straight to storage (api/reads/interests.py); follow and unfollow go through the caller's UserShard
entity (actors/recommendations.py), which changes the follows row and the interest's ``followers_count`` in one
transaction.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from api.contract import operation
from api.deps import Ctx, MaybeUser, User, WriteLimit
from api.pagination import DEFAULT_LIMIT, Cursor, Limit
from api.reads import interests
from api.responses import Encoded, encoded
from api.routes.users import OPTIONAL_BEARER
from domain import ops
from domain.wire.posts import PostPage
from domain.wire.recs import Interest, InterestPage
from domain.wire.users import FollowState

router = APIRouter(tags=["interests"])

Slug = Annotated[str, Path(min_length=1, max_length=64, description="An interest's slug (any case)")]


def _viewer_id(viewer: Any) -> int | None:
    return None if viewer is None else int(viewer.user_id)


@router.get("/interests", **operation("listInterests", ok=InterestPage, errors=(401, 422), extra=OPTIONAL_BEARER))
async def list_interests(
    request: Request, viewer: MaybeUser, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Encoded:
    """The catalogue of interests in its fixed order, with `followed_by_me` for the caller (false without a
    token). A post belongs to an interest when its caption has the slug as a hashtag (`#travel`), one of the
    interest's other hashtags, or one of its keywords; it is tagged when it is created."""
    page = await interests.catalogue(ctx.services.pool, _viewer_id(viewer), limit, cursor)
    return encoded(request, page)


@router.get("/interests/{slug}", **operation("getInterest", ok=Interest, errors=(401, 404), extra=OPTIONAL_BEARER))
async def get_interest(request: Request, slug: Slug, viewer: MaybeUser, ctx: Ctx) -> Encoded:
    """One interest of the catalogue, with `followed_by_me` for the caller (false without a token)."""
    return encoded(request, await interests.one(ctx.services.pool, slug, _viewer_id(viewer)))


@router.get(
    "/interests/{slug}/posts",
    **operation("listInterestPosts", ok=PostPage, errors=(401, 404, 422), extra=OPTIONAL_BEARER),
)
async def interest_posts(
    request: Request, slug: Slug, viewer: MaybeUser, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Encoded:
    """The interest's posts, newest first."""
    page = await interests.posts(ctx.posts, ctx.services.pool, slug, _viewer_id(viewer), limit, cursor)
    return encoded(request, page)


async def _follow(request: Request, ctx: Ctx, user: Any, slug: str, on: bool) -> Encoded:
    following = await ctx.users.call(ops.FollowInterest(user_id=user.user_id, slug=interests.slug_of(slug), on=on))
    return encoded(request, FollowState(following=following))


@router.put(
    "/interests/{slug}/follow",
    **operation("followInterest", ok=FollowState, errors=(401, 404, 429)),
    dependencies=[WriteLimit],
)
async def follow_interest(request: Request, slug: Slug, user: User, ctx: Ctx) -> Encoded:
    """Follow an interest (idempotent): its posts come to your explore page with an `interest` reason."""
    return await _follow(request, ctx, user, slug, True)


@router.delete(
    "/interests/{slug}/follow",
    **operation("unfollowInterest", ok=FollowState, errors=(401, 404, 429)),
    dependencies=[WriteLimit],
)
async def unfollow_interest(request: Request, slug: Slug, user: User, ctx: Ctx) -> Encoded:
    """Stop following an interest (idempotent: `following` false whether or not you did)."""
    return await _follow(request, ctx, user, slug, False)


@router.get("/me/interests", **operation("listMyInterests", ok=InterestPage, errors=(401, 422)))
async def my_interests(
    request: Request, user: User, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Encoded:
    """The interests you follow, newest follow first."""
    return encoded(request, await interests.mine(ctx.services.pool, user.user_id, limit, cursor))
