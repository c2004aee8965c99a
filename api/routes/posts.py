"""/posts, a user's posts, hashtag pages and /me/mentions (issue 11).

Creating and deleting are typed ops of the author's UserShard entity (actors/posts.py): one Ray hop, one transaction,
and the entity publishes the committed events after it. Reads go straight to storage and hydrate a
page with one query per kind (storage/posts.py ``hydrate``).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import Response

from api.deps import Ctx, MaybeUser, User, WriteLimit, ctx_of, optional_token_user
from api.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor
from api.responses import Encoded, encoded, no_content
from api.routes.users import OPTIONAL_BEARER, Username
from api.schemas.common import error_responses
from api.schemas.posts import CreatePost, Hashtag, Post, PostPage
from domain import ops
from domain.errors import NotFound
from domain.post_text import normalize_tag
from domain.posts import body_hash, check_post
from storage import engagement as engagement_store
from storage import posts as post_store
from storage import users as user_store
from storage.views import public_post

log = logging.getLogger("i9lyfe.api.posts")
router = APIRouter(tags=["posts"])

PostId = Annotated[int, Path(ge=1, le=(1 << 63) - 1, description="A post id")]
Tag = Annotated[str, Path(min_length=1, max_length=101, description="A hashtag, with or without #")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        pattern=r"^[ -~]{1,128}$",
        description="A retry with the same key and body within 24 h returns the original post",
    ),
]


async def _page(ctx: Ctx, viewer: Any, rows: list[Any], limit: int) -> dict[str, Any]:
    more, rows = len(rows) > limit, rows[:limit]
    ids = [int(r["post_id"]) for r in rows]
    views = await ctx.posts.views(ctx.services.pool, ids, None if viewer is None else viewer.user_id)
    items = [public_post(views[i]) for i in ids if i in views]
    last = rows[-1] if rows else None
    cursor = encode_cursor(last["at"], int(last["post_id"])) if more and last is not None else None
    return {"items": items, "next_cursor": cursor}


@router.post(
    "/posts",
    status_code=201,
    response_model=Post,
    responses=error_responses(400, 401, 415, 422, 429, 503),
    dependencies=[WriteLimit],
)
async def create_post(
    request: Request, body: CreatePost, user: User, ctx: Ctx, idempotency_key: IdempotencyKey = None
) -> Encoded:
    """Create a post from your own completed uploads. With `Idempotency-Key`, a retry with the same body returns
    the original post (the same key with another body: 422 `idempotency_key_reused`)."""
    raw = body.model_dump(exclude_none=True)
    type_, caption, media_ids = check_post(body.type, body.caption, body.media_ids)
    op = ops.CreatePost(
        user_id=user.user_id,
        type=type_,  # type: ignore[arg-type]  # one of POST_TYPES, checked
        caption=caption,
        media_ids=media_ids,
        idempotency_key=idempotency_key,
        body_hash=body_hash(raw),
    )
    created = await ctx.users.call(op)
    return encoded(request, public_post(created.body), status_code=created.status)


@router.get("/posts/{post_id}", response_model=Post, responses=error_responses(401, 404), openapi_extra=OPTIONAL_BEARER)
async def get_post(request: Request, post_id: PostId) -> Encoded:
    """A post; `my` holds the caller's reaction, repost and save (with a token)."""
    # The hot read: the caller and the context are read here, not through dependency resolution, and the
    # session is checked in the post's own query (no denylist round trip), as GET /me does.
    viewer = await optional_token_user(request)
    ctx = ctx_of(request)
    views = await ctx.posts.views(
        ctx.services.pool,
        [post_id],
        None if viewer is None else viewer.user_id,
        session_id=None if viewer is None else viewer.session_id,
    )
    if post_id not in views:
        raise NotFound("No such post.")
    return encoded(request, public_post(views[post_id]))


@router.delete(
    "/posts/{post_id}", status_code=204, responses=error_responses(401, 403, 404, 429), dependencies=[WriteLimit]
)
async def delete_post(post_id: PostId, user: User, ctx: Ctx) -> Response:
    """Delete your post: it leaves every list, hashtag page and count (author only: 403 for others)."""
    await ctx.users.call(ops.DeletePost(user_id=user.user_id, post_id=post_id))
    return no_content()


@router.get(
    "/users/{username}/posts",
    response_model=PostPage,
    responses=error_responses(401, 404, 422),
    openapi_extra=OPTIONAL_BEARER,
)
async def user_posts(
    request: Request,
    username: Username,
    viewer: MaybeUser,
    ctx: Ctx,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Encoded:
    """The user's posts and reposts, newest first (by the time of posting or reposting)."""
    pool: asyncpg.Pool = ctx.services.pool
    owner = await user_store.find_user_by_username(pool, username)
    if owner is None:
        raise NotFound("No such user.")
    rows = await engagement_store.list_user_posts(pool, int(owner["id"]), limit + 1, decode_cursor(cursor))
    return encoded(request, await _page(ctx, viewer, rows, limit))


def _tag(value: str) -> str:
    tag = normalize_tag(value)
    if tag is None:
        raise NotFound("No such hashtag.")
    return tag


@router.get(
    "/hashtags/{tag}", response_model=Hashtag, responses=error_responses(401, 404), openapi_extra=OPTIONAL_BEARER
)
async def hashtag(request: Request, tag: Tag, viewer: MaybeUser, ctx: Ctx) -> Encoded:
    row = await post_store.get_hashtag(ctx.services.pool, _tag(tag))
    if row is None:
        raise NotFound("No such hashtag.")
    return encoded(request, {"tag": row["tag"], "posts_count": row["posts_count"]})


@router.get(
    "/hashtags/{tag}/posts",
    response_model=PostPage,
    responses=error_responses(401, 404, 422),
    openapi_extra=OPTIONAL_BEARER,
)
async def hashtag_posts(
    request: Request, tag: Tag, viewer: MaybeUser, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Encoded:
    """The hashtag's posts, newest first (an unknown hashtag has none)."""
    rows = await post_store.list_by_tag(ctx.services.pool, _tag(tag), limit + 1, decode_cursor(cursor))
    return encoded(request, await _page(ctx, viewer, rows, limit))


@router.get("/me/mentions", response_model=PostPage, responses=error_responses(401, 422))
async def my_mentions(
    request: Request, user: User, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Encoded:
    """Posts mentioning me, newest mention first."""
    rows = await post_store.list_mentioning(ctx.services.pool, user.user_id, limit + 1, decode_cursor(cursor))
    return encoded(request, await _page(ctx, user, rows, limit))
