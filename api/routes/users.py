"""/users/{username}: profiles, the follow graph (follow, unfollow, followers and following lists).

Reads go straight to storage (no actor hop) and hydrate a page with one query per kind: the users with their
follow rows, then the viewer's flags for the whole page (storage/graph.py). Follow writes go through the
follower's UserShard entity (actors/follows.py), which commits the follow with its notification and outbox row;
the event is published here after that commit.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Path, Request

from api import presenters
from api.deps import Ctx, MaybeUser, User, WriteLimit
from api.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor
from api.responses import Encoded, encoded
from api.schemas.common import error_responses
from api.schemas.users import FollowState, Profile, UserPage
from domain import ops
from domain.errors import NotFound
from domain.rules import RuleError, normalize_username
from storage import graph as graph_store
from storage import users as user_store

log = logging.getLogger("i9lyfe.api.users")
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


async def _user(pool: asyncpg.Pool, username: str) -> asyncpg.Record:
    row = await user_store.find_user_by_username(pool, username)
    if row is None:
        raise NotFound("No such user.")
    return row


async def _flags(pool: asyncpg.Pool, viewer_id: int | None, user_ids: list[int]) -> dict[int, tuple[bool, bool]]:
    if viewer_id is None:
        return {}
    return await graph_store.viewer_flags(pool, viewer_id, user_ids)


def _summary(row: Any, flags: dict[int, tuple[bool, bool]]) -> dict[str, Any]:
    pair = flags.get(int(row["id"]))
    if pair is None:
        return presenters.user_summary(row)
    return presenters.user_summary(row, followed_by_me=pair[0], follows_me=pair[1])


@router.get(
    "/users/{username}", response_model=Profile, responses=error_responses(401, 404), openapi_extra=OPTIONAL_BEARER
)
async def get_profile(request: Request, username: Username, viewer: MaybeUser, ctx: Ctx) -> Encoded:
    """A profile with its counts; `followed_by_me` / `follows_me` only with a token."""
    pool = ctx.services.pool
    row = await _user(pool, username)
    if viewer is None:
        return encoded(request, presenters.profile(row))
    flags = await _flags(pool, viewer.user_id, [int(row["id"])])
    followed, follows = flags.get(int(row["id"]), (False, False))
    return encoded(request, presenters.profile(row, followed_by_me=followed, follows_me=follows))


async def _page(
    request: Request, ctx: Ctx, viewer: Any, username: str, limit: int, cursor: str | None, *, followers: bool
) -> Encoded:
    after = decode_cursor(cursor)
    pool = ctx.services.pool
    owner = await _user(pool, username)
    fetch = graph_store.followers_page if followers else graph_store.following_page
    rows = await fetch(pool, int(owner["id"]), limit + 1, after)
    more, rows = len(rows) > limit, rows[:limit]
    flags = await _flags(pool, None if viewer is None else viewer.user_id, [int(r["id"]) for r in rows])
    last = rows[-1] if rows else None
    next_cursor = encode_cursor(last["followed_at"], int(last["id"])) if more and last is not None else None
    return encoded(request, {"items": [_summary(r, flags) for r in rows], "next_cursor": next_cursor})


@router.get(
    "/users/{username}/followers",
    response_model=UserPage,
    responses=error_responses(401, 404, 422),
    openapi_extra=OPTIONAL_BEARER,
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
    response_model=UserPage,
    responses=error_responses(401, 404, 422),
    openapi_extra=OPTIONAL_BEARER,
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
    response_model=FollowState,
    responses=error_responses(401, 404, 422, 429),
    dependencies=[WriteLimit],
)
async def follow(request: Request, username: Username, user: User, ctx: Ctx) -> Encoded:
    """Follow this user (idempotent: following again changes nothing); 422 for yourself. The user gets a
    `follow` notification, live on the socket, once per follow."""
    following = await ctx.users.call(ops.Follow(user_id=user.user_id, username=_followee(username)))
    return encoded(request, {"following": following})


@router.delete(
    "/users/{username}/follow",
    response_model=FollowState,
    responses=error_responses(401, 404, 422, 429),
    dependencies=[WriteLimit],
)
async def unfollow(request: Request, username: Username, user: User, ctx: Ctx) -> Encoded:
    """Stop following this user (idempotent: `following` false whether or not you were)."""
    following = await ctx.users.call(ops.Unfollow(user_id=user.user_id, username=_followee(username)))
    return encoded(request, {"following": following})


def _followee(username: str) -> str:
    """A username that cannot exist is a user that does not: 404."""
    try:
        return normalize_username(username)
    except RuleError as exc:
        raise NotFound("No such user.") from exc
