"""/users/{username}: profiles, the follow graph (follow, unfollow, followers and following lists).

Reads go straight to storage (api/reads/users.py, no actor hop). Follow writes go through the follower's
UserShard entity (actors/follows.py), which commits the follow with its notification and outbox row and
publishes the event after that commit.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from api.contract import operation
from api.deps import Ctx, MaybeUser, User, WriteLimit
from api.pagination import DEFAULT_LIMIT, Cursor, Limit
from api.reads import users as user_reads
from api.responses import Encoded, encoded
from domain import ops
from domain.errors import NotFound
from domain.rules import RuleError, normalize_username
from domain.wire.users import FollowState, Profile, UserPage

# Reads take a token or none: the OpenAPI security requirement is "bearer, or nothing".
OPTIONAL_BEARER: dict[str, Any] = {"security": [{"HTTPBearer": []}, {}]}
router = APIRouter(tags=["users"])

Username = Annotated[
    str,
    Path(
        min_length=3,
        max_length=30,
        pattern=r"^[A-Za-z0-9_.]{3,30}$",
        description="The user's username, in any case",
    ),
]


@router.get("/users/{username}", **operation("getUser", ok=Profile, errors=(401, 404), extra=OPTIONAL_BEARER))
async def get_profile(request: Request, username: Username, viewer: MaybeUser, ctx: Ctx) -> Encoded:
    """A profile with its counts; `followed_by_me` / `follows_me` only with a token."""
    base_url = ctx.services.settings.public_base_url
    viewer_id = None if viewer is None else viewer.user_id
    return encoded(request, await user_reads.user_profile(ctx.services.pool, base_url, username, viewer_id))


async def _page(
    request: Request, ctx: Ctx, viewer: Any, username: str, limit: int, cursor: str | None, *, followers: bool
) -> Encoded:
    page = await user_reads.follow_page(
        ctx.services.pool,
        ctx.services.settings.public_base_url,
        username,
        None if viewer is None else viewer.user_id,
        limit,
        cursor,
        followers=followers,
    )
    return encoded(request, page)


@router.get(
    "/users/{username}/followers",
    **operation("listFollowers", ok=UserPage, errors=(401, 404, 422), extra=OPTIONAL_BEARER),
)
async def get_followers(
    request: Request,
    username: Username,
    viewer: MaybeUser,
    ctx: Ctx,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Encoded:
    """Those who follow this user, newest follow first, with the caller's flags on each (with a token)."""
    return await _page(request, ctx, viewer, username, limit, cursor, followers=True)


@router.get(
    "/users/{username}/following",
    **operation("listFollowing", ok=UserPage, errors=(401, 404, 422), extra=OPTIONAL_BEARER),
)
async def get_following(
    request: Request,
    username: Username,
    viewer: MaybeUser,
    ctx: Ctx,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Encoded:
    """Those this user follows, newest follow first, with the caller's flags on each (with a token)."""
    return await _page(request, ctx, viewer, username, limit, cursor, followers=False)


@router.put(
    "/users/{username}/follow",
    **operation("followUser", ok=FollowState, errors=(401, 404, 422, 429)),
    dependencies=[WriteLimit],
)
async def follow(request: Request, username: Username, user: User, ctx: Ctx) -> Encoded:
    """Follow this user (idempotent: following again changes nothing); 422 for yourself. The user gets a
    `follow` notification, live on the socket, once per follow."""
    following = await ctx.users.call(ops.Follow(user_id=user.user_id, username=_followee(username)))
    return encoded(request, FollowState(following=following))


@router.delete(
    "/users/{username}/follow",
    **operation("unfollowUser", ok=FollowState, errors=(401, 404, 422, 429)),
    dependencies=[WriteLimit],
)
async def unfollow(request: Request, username: Username, user: User, ctx: Ctx) -> Encoded:
    """Stop following this user (idempotent: `following` false whether or not you were)."""
    following = await ctx.users.call(ops.Unfollow(user_id=user.user_id, username=_followee(username)))
    return encoded(request, FollowState(following=following))


def _followee(username: str) -> str:
    """A username that cannot exist is a user that does not: 404."""
    try:
        return normalize_username(username)
    except RuleError as exc:
        raise NotFound("No such user.") from exc
