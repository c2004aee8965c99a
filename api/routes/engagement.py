"""Reactions, comments and replies, reposts, saves and the /me lists built from them (issue 11).

Writes are typed ops of the acting user's UserShard entity (actors/engagement.py); after commit the entity publishes
the events, and each post whose counts changed gets one small "counts changed" message on its topic channel, which
the gateways coalesce into ``post.counts`` / ``comment.counts`` for their subscribed sockets (api/ws/live_counts.py).
Reads go straight to storage, one query per kind (api/reads/comments.py, api/reads/posts.py).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from api.codec import JSON
from api.contract import PathId, body, operation, ref
from api.deps import Ctx, MaybeUser, User, WriteLimit, ctx_of, optional_token_user
from api.pagination import DEFAULT_LIMIT, PAGE_PARAMETERS, Cursor, Limit, read_page
from api.reads import comments as comment_reads
from api.responses import Encoded, encoded, no_content
from api.routes.posts import IdempotencyKey, PostId, sent
from api.routes.users import OPTIONAL_BEARER
from domain import ops
from domain.chat import check_emoji
from domain.posts import body_hash, check_comment
from domain.wire.posts import (
    NEW_COMMENT_ANY_OF,
    Comment,
    CommentEngagement,
    CommentPage,
    NewComment,
    NewReaction,
    PostEngagement,
    PostPage,
    ReactorPage,
    Reposted,
    Saved,
)

log = logging.getLogger("i9lyfe.api.engagement")
router = APIRouter(tags=["engagement"])

CommentId = Annotated[PathId, Path(description="A comment id")]
EmojiFilter = Annotated[str | None, Query(min_length=1, max_length=32, description="Only reactions with this emoji")]
# A comment's body: NewComment with at least one of text and media_id (said here: a struct's schema cannot).
NEW_COMMENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {JSON: {"schema": {"allOf": [ref(NewComment)], "anyOf": NEW_COMMENT_ANY_OF}}},
    }
}


def _viewer_id(viewer: Any) -> int | None:
    return None if viewer is None else int(viewer.user_id)


# ------------------------------------------------------------ the comments page (first: the router tries
# routes in order, and this is the hot read of this module)


@router.get(
    "/posts/{post_id}/comments",
    **operation(
        "listPostComments",
        ok=CommentPage,
        errors=(401, 404, 422),
        extra={**OPTIONAL_BEARER, "parameters": PAGE_PARAMETERS},
    ),
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
    denied = None if viewer is None else keys.revoked_session(viewer.session_id)

    async def render() -> Encoded:
        services = ctx.services
        page = await comment_reads.comment_page(
            services.pool, services.settings, _viewer_id(viewer), post_id, None, limit, cursor
        )
        return encoded(request, page)

    return await ctx.response_cache.serve(request, key, comment_reads.page_versions(keys, post_id), denied, render)


# ------------------------------------------------------------ post reactions, reposts, saves


@router.put(
    "/posts/{post_id}/reaction",
    **operation("reactToPost", ok=PostEngagement, request=NewReaction, errors=(401, 404, 422, 429)),
    dependencies=[WriteLimit],
)
async def react_post(
    request: Request, post_id: PostId, user: User, ctx: Ctx, payload: NewReaction = body(NewReaction)
) -> Encoded:
    """React with one emoji (one per user per post; another emoji replaces yours without counting twice)."""
    op = ops.ReactToPost(user_id=user.user_id, post_id=post_id, emoji=check_emoji(payload.emoji))
    return encoded(request, await ctx.users.call(op))


@router.delete(
    "/posts/{post_id}/reaction",
    **operation("unreactToPost", status=204, description="Removed", errors=(401, 404, 429)),
    dependencies=[WriteLimit],
)
async def unreact_post(post_id: PostId, user: User, ctx: Ctx) -> Response:
    """Take back your reaction (none: nothing changes)."""
    await ctx.users.call(ops.UnreactToPost(user_id=user.user_id, post_id=post_id))
    return no_content()


@router.get(
    "/posts/{post_id}/reactions",
    **operation("listPostReactions", ok=ReactorPage, errors=(401, 404, 422), extra=OPTIONAL_BEARER),
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
    services = ctx.services
    page = await comment_reads.post_reactors(services.pool, services.settings, post_id, emoji, limit, cursor)
    return encoded(request, page)


@router.put(
    "/posts/{post_id}/repost",
    **operation("repostPost", ok=Reposted, errors=(401, 404, 429)),
    dependencies=[WriteLimit],
)
async def repost(request: Request, post_id: PostId, user: User, ctx: Ctx) -> Encoded:
    """Repost (idempotent); the author gets a `repost` notification once."""
    return encoded(request, await ctx.users.call(ops.SetRepost(user_id=user.user_id, post_id=post_id, on=True)))


@router.delete(
    "/posts/{post_id}/repost",
    **operation("unrepostPost", ok=Reposted, errors=(401, 404, 429)),
    dependencies=[WriteLimit],
)
async def unrepost(request: Request, post_id: PostId, user: User, ctx: Ctx) -> Encoded:
    """Take back your repost (idempotent)."""
    return encoded(request, await ctx.users.call(ops.SetRepost(user_id=user.user_id, post_id=post_id, on=False)))


@router.put(
    "/posts/{post_id}/save",
    **operation("savePost", ok=Saved, errors=(401, 404, 429)),
    dependencies=[WriteLimit],
)
async def save(request: Request, post_id: PostId, user: User, ctx: Ctx) -> Encoded:
    """Save (idempotent; only you see your saves)."""
    return encoded(request, await ctx.users.call(ops.SetSave(user_id=user.user_id, post_id=post_id, on=True)))


@router.delete(
    "/posts/{post_id}/save",
    **operation("unsavePost", ok=Saved, errors=(401, 404, 429)),
    dependencies=[WriteLimit],
)
async def unsave(request: Request, post_id: PostId, user: User, ctx: Ctx) -> Encoded:
    """Take back your save (idempotent)."""
    return encoded(request, await ctx.users.call(ops.SetSave(user_id=user.user_id, post_id=post_id, on=False)))


# ------------------------------------------------------------ comments and replies


async def _comment(
    request: Request,
    ctx: Ctx,
    user: Any,
    post_id: int | None,
    parent_id: int | None,
    payload: NewComment,
    key: str | None,
) -> Encoded:
    text, media_id = check_comment(payload.text, payload.media_id)
    op = ops.AddComment(
        user_id=user.user_id,
        post_id=post_id,
        parent_id=parent_id,
        text=text,
        media_id=media_id,
        idempotency_key=key,
        body_hash=body_hash({"post_id": post_id, "parent_id": parent_id, **sent(payload)}),
    )
    return encoded(request, await ctx.users.call(op), status_code=201)


@router.post(
    "/posts/{post_id}/comments",
    **operation("commentOnPost", ok=Comment, status=201, errors=(401, 404, 422, 429), extra=NEW_COMMENT_BODY),
    dependencies=[WriteLimit],
)
async def add_comment(
    request: Request,
    post_id: PostId,
    user: User,
    ctx: Ctx,
    payload: NewComment = body(NewComment),
    idempotency_key: IdempotencyKey = None,
) -> Encoded:
    """Comment with text (<= 2,000) and/or one image or video (your own upload for `comment`)."""
    return await _comment(request, ctx, user, post_id, None, payload, idempotency_key)


@router.get(
    "/comments/{comment_id}",
    **operation("getComment", ok=Comment, errors=(401, 404), extra=OPTIONAL_BEARER),
)
async def get_comment(request: Request, comment_id: CommentId, viewer: MaybeUser, ctx: Ctx) -> Encoded:
    """A comment or reply; `my` holds the caller's reaction (with a token)."""
    services = ctx.services
    return encoded(
        request, await comment_reads.comment(services.pool, services.settings, comment_id, _viewer_id(viewer))
    )


@router.delete(
    "/comments/{comment_id}",
    **operation("deleteComment", status=204, description="Deleted", errors=(401, 403, 404, 429)),
    dependencies=[WriteLimit],
)
async def delete_comment(comment_id: CommentId, user: User, ctx: Ctx) -> Response:
    """Delete a comment (its author, or the post's author); its replies go too."""
    await ctx.users.call(ops.DeleteComment(user_id=user.user_id, comment_id=comment_id))
    return no_content()


@router.post(
    "/comments/{comment_id}/replies",
    **operation("replyToComment", ok=Comment, status=201, errors=(401, 404, 422, 429), extra=NEW_COMMENT_BODY),
    dependencies=[WriteLimit],
)
async def reply(
    request: Request,
    comment_id: CommentId,
    user: User,
    ctx: Ctx,
    payload: NewComment = body(NewComment),
    idempotency_key: IdempotencyKey = None,
) -> Encoded:
    """Reply to a comment (at any depth), as comments."""
    return await _comment(request, ctx, user, None, comment_id, payload, idempotency_key)


@router.get(
    "/comments/{comment_id}/replies",
    **operation("listCommentReplies", ok=CommentPage, errors=(401, 404, 422), extra=OPTIONAL_BEARER),
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
    services = ctx.services
    page = await comment_reads.comment_page(
        services.pool, services.settings, _viewer_id(viewer), None, comment_id, limit, cursor
    )
    return encoded(request, page)


@router.put(
    "/comments/{comment_id}/reaction",
    **operation("reactToComment", ok=CommentEngagement, request=NewReaction, errors=(401, 404, 422, 429)),
    dependencies=[WriteLimit],
)
async def react_comment(
    request: Request, comment_id: CommentId, user: User, ctx: Ctx, payload: NewReaction = body(NewReaction)
) -> Encoded:
    """React to a comment with one emoji, as to a post."""
    op = ops.ReactToComment(user_id=user.user_id, comment_id=comment_id, emoji=check_emoji(payload.emoji))
    return encoded(request, await ctx.users.call(op))


@router.delete(
    "/comments/{comment_id}/reaction",
    **operation("unreactToComment", status=204, description="Removed", errors=(401, 404, 429)),
    dependencies=[WriteLimit],
)
async def unreact_comment(comment_id: CommentId, user: User, ctx: Ctx) -> Response:
    """Take back your reaction to a comment (none: nothing changes)."""
    await ctx.users.call(ops.UnreactToComment(user_id=user.user_id, comment_id=comment_id))
    return no_content()


@router.get(
    "/comments/{comment_id}/reactions",
    **operation("listCommentReactions", ok=ReactorPage, errors=(401, 404, 422), extra=OPTIONAL_BEARER),
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
    """Who reacted to the comment, newest first; `?emoji=` for one emoji only."""
    services = ctx.services
    page = await comment_reads.comment_reactors(services.pool, services.settings, comment_id, emoji, limit, cursor)
    return encoded(request, page)


# ------------------------------------------------------------ my lists


@router.get("/me/saved", **operation("listMySaved", ok=PostPage, errors=(401, 422)))
async def my_saved(
    request: Request, user: User, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Encoded:
    """Posts I saved, newest save first."""
    return encoded(request, await ctx.posts.marked(ctx.services.pool, "saved", user.user_id, limit, cursor))


@router.get("/me/reacted", **operation("listMyReacted", ok=PostPage, errors=(401, 422)))
async def my_reacted(
    request: Request, user: User, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Encoded:
    """Posts I reacted to, newest reaction first."""
    return encoded(request, await ctx.posts.marked(ctx.services.pool, "reacted", user.user_id, limit, cursor))


@router.get("/me/commented", **operation("listMyCommented", ok=PostPage, errors=(401, 422)))
async def my_commented(
    request: Request, user: User, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Encoded:
    """Posts I commented on, by my latest comment on each."""
    return encoded(request, await ctx.posts.marked(ctx.services.pool, "commented", user.user_id, limit, cursor))
