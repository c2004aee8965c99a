"""Reactions, comments and replies, reposts, saves and the /me lists built from them (issue 11).

Writes are typed ops of the acting user's UserShard entity (actors/engagement.py); after commit the entity publishes
the events, and each post whose counts changed gets one small "counts changed" message on its topic channel, which
the gateways coalesce into ``post.counts`` / ``comment.counts`` for their subscribed sockets (api/ws/live_counts.py).
Reads go straight to storage, one query per kind.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from api import presenters
from api.deps import Ctx, MaybeUser, User, WriteLimit, ctx_of, optional_token_user
from api.pagination import DEFAULT_LIMIT, PAGE_PARAMETERS, Cursor, Limit, decode_cursor, encode_cursor, read_page
from api.responses import Encoded, encoded, no_content
from api.routes.posts import IdempotencyKey, PostId, _page
from api.routes.users import OPTIONAL_BEARER
from api.schemas.common import error_responses
from api.schemas.engagement import (
    CommentCountsOut,
    CommentOut,
    CommentPage,
    NewComment,
    PostCountsOut,
    Reaction,
    ReactorPage,
    Reposted,
    Saved,
)
from api.schemas.posts import PostPage
from domain import ops
from domain.chat import check_emoji
from domain.errors import NotFound
from domain.posts import body_hash, check_comment
from storage import engagement as store
from storage import live_cache
from storage.views import comment_views

log = logging.getLogger("i9lyfe.api.engagement")
router = APIRouter(tags=["engagement"])

CommentId = Annotated[int, Path(ge=1, le=(1 << 63) - 1, description="A comment id")]
MARK_ERRORS = error_responses(401, 404, 429)
EmojiFilter = Annotated[str | None, Query(min_length=1, max_length=32, description="Only reactions with this emoji")]


def _viewer_id(viewer: Any) -> int | None:
    return None if viewer is None else int(viewer.user_id)


# ------------------------------------------------------------ the comments page (first: the router tries
# routes in order, and this is the hot read of this module)


@router.get(
    "/posts/{post_id}/comments",
    response_model=CommentPage,
    responses=error_responses(401, 404, 422),
    openapi_extra={**OPTIONAL_BEARER, "parameters": PAGE_PARAMETERS},
)
async def comments(request: Request, post_id: PostId) -> Encoded:
    """The post's comments (not their replies), newest first."""
    # A hot read: the caller and the page parameters are read here (not through dependency resolution) and the
    # page is served from the response cache while the post's comments and every user summary are as they were
    # (api/response_cache.py).
    limit, cursor = read_page(request)
    viewer = await optional_token_user(request)
    ctx = ctx_of(request)
    keys = ctx.services.keys
    key = keys("rc", "comments", post_id, cursor or "-", limit, 0 if viewer is None else viewer.user_id)
    versions = [live_cache.comments_version_key(keys, post_id), live_cache.profiles_version_key(keys)]
    denied = None if viewer is None else keys.revoked_session(viewer.session_id)
    return await ctx.response_cache.serve(
        request, key, versions, denied, lambda: _comment_page(request, ctx, viewer, post_id, None, limit, cursor)
    )


# ------------------------------------------------------------ post reactions, reposts, saves


@router.put(
    "/posts/{post_id}/reaction",
    response_model=PostCountsOut,
    responses=error_responses(401, 404, 422, 429),
    dependencies=[WriteLimit],
)
async def react_post(request: Request, post_id: PostId, body: Reaction, user: User, ctx: Ctx) -> Encoded:
    """React with one emoji (one per user per post; another emoji replaces yours without counting twice)."""
    op = ops.ReactToPost(user_id=user.user_id, post_id=post_id, emoji=check_emoji(body.emoji))
    return encoded(request, await ctx.users.call(op))


@router.delete(
    "/posts/{post_id}/reaction", status_code=204, responses=error_responses(401, 404, 429), dependencies=[WriteLimit]
)
async def unreact_post(post_id: PostId, user: User, ctx: Ctx) -> Response:
    await ctx.users.call(ops.UnreactToPost(user_id=user.user_id, post_id=post_id))
    return no_content()


async def _reactors(
    request: Request, ctx: Ctx, table: str, column: str, target: int, emoji: str | None, limit: int, cursor: str | None
) -> Encoded:
    chosen = None if emoji is None else check_emoji(emoji)
    rows = await store.list_reactors(ctx.services.pool, table, column, target, chosen, limit + 1, decode_cursor(cursor))
    more, rows = len(rows) > limit, rows[:limit]
    items = [
        {
            "user": presenters.user_summary({k.removeprefix("user_"): r[k] for k in r.keys() if k.startswith("user_")}),  # noqa: SIM118
            "emoji": r["emoji"],
            "created_at": presenters.rfc3339(r["at"]),
        }
        for r in rows
    ]
    next_cursor = encode_cursor(rows[-1]["at"], int(rows[-1]["id"])) if more and rows else None
    return encoded(request, {"items": items, "next_cursor": next_cursor})


@router.get(
    "/posts/{post_id}/reactions",
    response_model=ReactorPage,
    responses=error_responses(401, 404, 422),
    openapi_extra=OPTIONAL_BEARER,
)
async def post_reactors(
    request: Request,
    post_id: PostId,
    viewer: MaybeUser,
    ctx: Ctx,
    emoji: EmojiFilter = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Encoded:
    """Who reacted, newest first; `?emoji=` for one emoji only."""
    if not await ctx.services.pool.fetchval("SELECT EXISTS (SELECT 1 FROM posts WHERE id = $1)", post_id):
        raise NotFound("No such post.")
    return await _reactors(request, ctx, "post_reactions", "post_id", post_id, emoji, limit, cursor)


async def _mark(request: Request, ctx: Ctx, user: Any, post_id: int, kind: str, on: bool) -> Encoded:
    op = ops.SetRepost if kind == "repost" else ops.SetSave
    return encoded(request, await ctx.users.call(op(user_id=user.user_id, post_id=post_id, on=on)))


@router.put(
    "/posts/{post_id}/repost",
    response_model=Reposted,
    responses=error_responses(401, 404, 429),
    dependencies=[WriteLimit],
)
async def repost(request: Request, post_id: PostId, user: User, ctx: Ctx) -> Encoded:
    """Repost (idempotent); the author gets a `repost` notification once."""
    return await _mark(request, ctx, user, post_id, "repost", True)


@router.delete(
    "/posts/{post_id}/repost",
    response_model=Reposted,
    responses=error_responses(401, 404, 429),
    dependencies=[WriteLimit],
)
async def unrepost(request: Request, post_id: PostId, user: User, ctx: Ctx) -> Encoded:
    return await _mark(request, ctx, user, post_id, "repost", False)


@router.put(
    "/posts/{post_id}/save", response_model=Saved, responses=error_responses(401, 404, 429), dependencies=[WriteLimit]
)
async def save(request: Request, post_id: PostId, user: User, ctx: Ctx) -> Encoded:
    """Save (idempotent; only you see your saves)."""
    return await _mark(request, ctx, user, post_id, "save", True)


@router.delete(
    "/posts/{post_id}/save", response_model=Saved, responses=error_responses(401, 404, 429), dependencies=[WriteLimit]
)
async def unsave(request: Request, post_id: PostId, user: User, ctx: Ctx) -> Encoded:
    return await _mark(request, ctx, user, post_id, "save", False)


# ------------------------------------------------------------ comments and replies


async def _comment_page(
    request: Request, ctx: Ctx, viewer: Any, post_id: int | None, parent_id: int | None, limit: int, cursor: str | None
) -> Encoded:
    async with ctx.services.pool.acquire() as conn:  # one connection for the request's two or three queries
        rows = await store.list_comments(conn, post_id, parent_id, limit + 1, decode_cursor(cursor))
        if not rows:  # an empty page: is there such a post (comment) at all?
            exists = (
                await conn.fetchval("SELECT EXISTS (SELECT 1 FROM posts WHERE id = $1)", post_id)
                if post_id is not None
                else await store.get_comment(conn, parent_id) is not None  # type: ignore[arg-type]
            )
            if not exists:
                raise NotFound("No such post." if post_id is not None else "No such comment.")
        more, rows = len(rows) > limit, rows[:limit]
        ids = [int(r["id"]) for r in rows]
        views = await comment_views(conn, ctx.services.settings, ids, _viewer_id(viewer))
    next_cursor = encode_cursor(rows[-1]["at"], int(rows[-1]["id"])) if more and rows else None
    return encoded(request, {"items": [views[i] for i in ids if i in views], "next_cursor": next_cursor})


@router.post(
    "/posts/{post_id}/comments",
    status_code=201,
    response_model=CommentOut,
    responses=error_responses(401, 404, 422, 429),
    dependencies=[WriteLimit],
)
async def add_comment(
    request: Request, post_id: PostId, body: NewComment, user: User, ctx: Ctx, idempotency_key: IdempotencyKey = None
) -> Encoded:
    """Comment with text (<= 2,000) and/or one image or video (your own upload for `comment`)."""
    return await _comment(request, ctx, user, post_id, None, body, idempotency_key)


async def _comment(
    request: Request, ctx: Ctx, user: Any, post_id: int | None, parent_id: int | None, body: NewComment, key: str | None
) -> Encoded:
    raw = body.model_dump(exclude_none=True)
    text, media_id = check_comment(body.text, body.media_id)
    op = ops.AddComment(
        user_id=user.user_id,
        post_id=post_id,
        parent_id=parent_id,
        text=text,
        media_id=media_id,
        idempotency_key=key,
        body_hash=body_hash({"post_id": post_id, "parent_id": parent_id, **raw}),
    )
    created = await ctx.users.call(op)
    return encoded(request, created.body, status_code=created.status)


@router.get(
    "/comments/{comment_id}",
    response_model=CommentOut,
    responses=error_responses(401, 404),
    openapi_extra=OPTIONAL_BEARER,
)
async def get_comment(request: Request, comment_id: CommentId, viewer: MaybeUser, ctx: Ctx) -> Encoded:
    views = await comment_views(ctx.services.pool, ctx.services.settings, [comment_id], _viewer_id(viewer))
    if comment_id not in views:
        raise NotFound("No such comment.")
    return encoded(request, views[comment_id])


@router.delete(
    "/comments/{comment_id}",
    status_code=204,
    responses=error_responses(401, 403, 404, 429),
    dependencies=[WriteLimit],
)
async def delete_comment(comment_id: CommentId, user: User, ctx: Ctx) -> Response:
    """Delete a comment (its author, or the post's author); its replies go too."""
    await ctx.users.call(ops.DeleteComment(user_id=user.user_id, comment_id=comment_id))
    return no_content()


@router.post(
    "/comments/{comment_id}/replies",
    status_code=201,
    response_model=CommentOut,
    responses=error_responses(401, 404, 422, 429),
    dependencies=[WriteLimit],
)
async def reply(
    request: Request,
    comment_id: CommentId,
    body: NewComment,
    user: User,
    ctx: Ctx,
    idempotency_key: IdempotencyKey = None,
) -> Encoded:
    """Reply to a comment (at any depth), as comments."""
    return await _comment(request, ctx, user, None, comment_id, body, idempotency_key)


@router.get(
    "/comments/{comment_id}/replies",
    response_model=CommentPage,
    responses=error_responses(401, 404, 422),
    openapi_extra=OPTIONAL_BEARER,
)
async def replies(
    request: Request,
    comment_id: CommentId,
    viewer: MaybeUser,
    ctx: Ctx,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Encoded:
    """The comment's direct replies, newest first."""
    return await _comment_page(request, ctx, viewer, None, comment_id, limit, cursor)


@router.put(
    "/comments/{comment_id}/reaction",
    response_model=CommentCountsOut,
    responses=error_responses(401, 404, 422, 429),
    dependencies=[WriteLimit],
)
async def react_comment(request: Request, comment_id: CommentId, body: Reaction, user: User, ctx: Ctx) -> Encoded:
    op = ops.ReactToComment(user_id=user.user_id, comment_id=comment_id, emoji=check_emoji(body.emoji))
    return encoded(request, await ctx.users.call(op))


@router.delete(
    "/comments/{comment_id}/reaction",
    status_code=204,
    responses=error_responses(401, 404, 429),
    dependencies=[WriteLimit],
)
async def unreact_comment(comment_id: CommentId, user: User, ctx: Ctx) -> Response:
    await ctx.users.call(ops.UnreactToComment(user_id=user.user_id, comment_id=comment_id))
    return no_content()


@router.get(
    "/comments/{comment_id}/reactions",
    response_model=ReactorPage,
    responses=error_responses(401, 404, 422),
    openapi_extra=OPTIONAL_BEARER,
)
async def comment_reactors(
    request: Request,
    comment_id: CommentId,
    viewer: MaybeUser,
    ctx: Ctx,
    emoji: EmojiFilter = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Encoded:
    if await store.get_comment(ctx.services.pool, comment_id) is None:
        raise NotFound("No such comment.")
    return await _reactors(request, ctx, "comment_reactions", "comment_id", comment_id, emoji, limit, cursor)


# ------------------------------------------------------------ my lists


async def _mine(request: Request, ctx: Ctx, user: Any, kind: str, limit: int, cursor: str | None) -> Encoded:
    rows = await store.list_marked(ctx.services.pool, kind, user.user_id, limit + 1, decode_cursor(cursor))
    return encoded(request, await _page(ctx, user, rows, limit))


@router.get("/me/saved", response_model=PostPage, responses=error_responses(401, 422))
async def my_saved(
    request: Request, user: User, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Encoded:
    """Posts I saved, newest save first."""
    return await _mine(request, ctx, user, "saved", limit, cursor)


@router.get("/me/reacted", response_model=PostPage, responses=error_responses(401, 422))
async def my_reacted(
    request: Request, user: User, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Encoded:
    """Posts I reacted to, newest reaction first."""
    return await _mine(request, ctx, user, "reacted", limit, cursor)


@router.get("/me/commented", response_model=PostPage, responses=error_responses(401, 422))
async def my_commented(
    request: Request, user: User, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Encoded:
    """Posts I commented on, by my latest comment on each."""
    return await _mine(request, ctx, user, "commented", limit, cursor)
