"""/me/notifications: my inbox, its unread count, and marking read.

Only the owner reads or marks a notification: every query is scoped by the caller's id, so nobody else's
notification is ever seen, counted or touched. All three go straight to storage (no shard hop): they touch only
the caller's own rows, and marking read is idempotent. A page is a few queries whatever its size: the
notifications with their actors joined in, the caller's follow flags for those actors (storage/graph.py), and
the Post objects the page refers to (actors/posts.py ``views``, one query per kind). Notifications are written by
the actors that notify (actors/follows.py, actors/posts.py), with their realtime `notification` event; an inbox
item equals that event's data, plus the caller's flags on the actor (and the caller's `my` on the post).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import Response

from api import presenters
from api.deps import Ctx, User, WriteLimit
from api.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor
from api.responses import Encoded, encoded, no_content
from api.schemas.common import error_responses
from api.schemas.notifications import MarkRead, NotificationPage, Types, UnreadCount, parse_types
from storage import graph as graph_store
from storage import notifications as notification_store
from storage.views import comment_views, public_post

router = APIRouter(tags=["notifications"])


def _notification(
    row: asyncpg.Record,
    flags: dict[int, tuple[bool, bool]],
    posts: dict[int, dict[str, Any]],
    comments: dict[int, dict[str, Any]],
) -> dict[str, Any]:
    """A Notification (API.md 2): ``post`` and ``comment`` only when the row names one (a deleted post or
    comment takes its notifications with it), ``emoji`` only when the row has one."""
    actor_id = int(row["actor_id"])
    followed, follows = flags.get(actor_id, (False, False))
    actor = {
        "id": actor_id,
        "username": row["actor_username"],
        "name": row["actor_name"],
        "avatar_media_id": row["actor_avatar_media_id"],
    }
    out: dict[str, Any] = {
        "id": str(row["id"]),
        "type": row["type"],
        "actor": presenters.user_summary(actor, followed_by_me=followed, follows_me=follows),
    }
    post = None if row["post_id"] is None else posts.get(int(row["post_id"]))
    if post is not None:
        out["post"] = public_post(post)
    comment = None if row["comment_id"] is None else comments.get(int(row["comment_id"]))
    if comment is not None:
        out["comment"] = comment
    if row["emoji"] is not None:
        out["emoji"] = row["emoji"]
    out["created_at"] = presenters.rfc3339(row["created_at"])
    out["read"] = row["read_at"] is not None
    return out


@router.get("/me/notifications", response_model=NotificationPage, responses=error_responses(401, 422))
async def list_notifications(
    request: Request,
    user: User,
    ctx: Ctx,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    types: Types = None,
) -> Encoded:
    """My notifications, newest first, read or not (`read`), each with its actor and my follow flags on it, and
    the post it is about (if any); only those of `types` when given (an unknown type is 422). Pages are stable
    while new ones arrive."""
    pool = ctx.services.pool
    rows = await notification_store.list_notifications(
        pool, user.user_id, limit + 1, decode_cursor(cursor), parse_types(types)
    )
    more, rows = len(rows) > limit, rows[:limit]
    flags = await graph_store.viewer_flags(pool, user.user_id, sorted({int(r["actor_id"]) for r in rows}))
    post_ids = sorted({int(r["post_id"]) for r in rows if r["post_id"] is not None})
    posts = await ctx.posts.views(pool, post_ids, user.user_id)
    comment_ids = sorted({int(r["comment_id"]) for r in rows if r["comment_id"] is not None})
    comments = await comment_views(pool, ctx.services.settings, comment_ids, user.user_id)
    next_cursor = encode_cursor(rows[-1]["created_at"], int(rows[-1]["id"])) if more and rows else None
    items = [_notification(r, flags, posts, comments) for r in rows]
    return encoded(request, {"items": items, "next_cursor": next_cursor})


@router.get("/me/notifications/unread-count", response_model=UnreadCount, responses=error_responses(401))
async def unread_count(request: Request, user: User, ctx: Ctx) -> Encoded:
    """How many of my notifications are unread, exactly."""
    return encoded(request, {"count": await notification_store.count_unread(ctx.services.pool, user.user_id)})


@router.post(
    "/me/notifications/read",
    status_code=204,
    responses=error_responses(401, 422, 429),
    dependencies=[WriteLimit],
)
async def mark_read(body: MarkRead, user: User, ctx: Ctx) -> Response:
    """Mark my notifications read: all up to and including `up_to_id`, or those of `ids` that are mine (others'
    ids are ignored, so they reveal nothing). Idempotent: already read ones stay read."""
    up_to_id, ids = body.selection()
    pool = ctx.services.pool
    if up_to_id is not None:
        await notification_store.mark_read_up_to(pool, user.user_id, up_to_id)
    elif ids:
        await notification_store.mark_read_ids(pool, user.user_id, ids)
    return no_content()
