"""/posts, a user's posts, hashtag pages and /me/mentions (issue 11).

Creating and deleting are typed ops of the author's UserShard entity (actors/posts.py): one Ray hop, one transaction,
and the entity publishes the committed events after it. Reads go straight to storage through the post reader
(api/reads/posts.py), which hydrates a page with one query per kind.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import Response

from api.contract import PathId, body, operation
from api.deps import Ctx, MaybeUser, User, WriteLimit, ctx_of, optional_token_user
from api.pagination import DEFAULT_LIMIT, Cursor, Limit
from api.reads import posts as post_reads
from api.responses import Encoded, encoded, no_content
from api.routes.users import OPTIONAL_BEARER, Username
from domain import ops
from domain.errors import NotFound
from domain.post_text import normalize_tag
from domain.posts import body_hash, check_post
from domain.wire.posts import Hashtag, NewPost, Post, PostPage

log = logging.getLogger("i9lyfe.api.posts")
router = APIRouter(tags=["posts"])

PostId = Annotated[PathId, Path(description="A post id")]
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


def sent(payload: msgspec.Struct) -> dict[str, Any]:
    """A body's fields as sent (those left out or null omitted): what an Idempotency-Key's body hash covers."""
    return {k: v for k, v in msgspec.structs.asdict(payload).items() if v is not None and v is not msgspec.UNSET}


def _viewer_id(viewer: Any) -> int | None:
    return None if viewer is None else int(viewer.user_id)


@router.post(
    "/posts",
    **operation("createPost", ok=Post, status=201, request=NewPost, errors=(401, 422, 429)),
    dependencies=[WriteLimit],
)
async def create_post(
    request: Request, user: User, ctx: Ctx, payload: NewPost = body(NewPost), idempotency_key: IdempotencyKey = None
) -> Encoded:
    """Create a post from your own completed uploads. With `Idempotency-Key`, a retry with the same body returns
    the original post (the same key with another body: 422 `idempotency_key_reused`)."""
    type_, caption, media_ids = check_post(payload.type, payload.caption, payload.media_ids)
    op = ops.CreatePost(
        user_id=user.user_id,
        type=type_,  # type: ignore[arg-type]  # one of POST_TYPES, checked
        caption=caption,
        media_ids=media_ids,
        idempotency_key=idempotency_key,
        body_hash=body_hash(sent(payload)),
    )
    return encoded(request, await ctx.users.call(op), status_code=201)


@router.get("/posts/{post_id}", **operation("getPost", ok=Post, errors=(401, 404), extra=OPTIONAL_BEARER))
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
    post = views.get(post_id)
    if post is None:
        raise NotFound("No such post.")
    return encoded(request, post)


@router.delete(
    "/posts/{post_id}",
    **operation("deletePost", status=204, description="Deleted", errors=(401, 403, 404, 429)),
    dependencies=[WriteLimit],
)
async def delete_post(post_id: PostId, user: User, ctx: Ctx) -> Response:
    """Delete your post: it leaves every list, hashtag page and count (author only: 403 for others)."""
    await ctx.users.call(ops.DeletePost(user_id=user.user_id, post_id=post_id))
    return no_content()


@router.get(
    "/users/{username}/posts",
    **operation("listUserPosts", ok=PostPage, errors=(401, 404, 422), extra=OPTIONAL_BEARER),
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
    page = await ctx.posts.user_posts(ctx.services.pool, username, _viewer_id(viewer), limit, cursor)
    return encoded(request, page)


def _tag(value: str) -> str:
    tag = normalize_tag(value)
    if tag is None:
        raise NotFound("No such hashtag.")
    return tag


@router.get("/hashtags/{tag}", **operation("getHashtag", ok=Hashtag, errors=(401, 404), extra=OPTIONAL_BEARER))
async def hashtag(request: Request, tag: Tag, viewer: MaybeUser, ctx: Ctx) -> Encoded:
    """A hashtag and how many posts carry it."""
    return encoded(request, await post_reads.hashtag(ctx.services.pool, _tag(tag)))


@router.get(
    "/hashtags/{tag}/posts",
    **operation("listHashtagPosts", ok=PostPage, errors=(401, 404, 422), extra=OPTIONAL_BEARER),
)
async def hashtag_posts(
    request: Request, tag: Tag, viewer: MaybeUser, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Encoded:
    """The hashtag's posts, newest first (an unknown hashtag has none)."""
    page = await ctx.posts.tagged(ctx.services.pool, _tag(tag), _viewer_id(viewer), limit, cursor)
    return encoded(request, page)


@router.get("/me/mentions", **operation("listMyMentions", ok=PostPage, errors=(401, 422)))
async def my_mentions(
    request: Request, user: User, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Encoded:
    """Posts mentioning me, newest mention first."""
    return encoded(request, await ctx.posts.mentioning(ctx.services.pool, user.user_id, limit, cursor))
