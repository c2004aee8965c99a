"""The caller's notifications, read in api processes (no shard hop: they touch only the caller's own rows, and
marking read is idempotent). Every query is scoped by the caller's id, so nobody else's notification is ever seen,
counted or touched. A page is a few queries whatever its size: the notifications with their actors joined in, the
caller's follow flags for those actors (storage/graph.py), and the posts and comments the page refers to (one
query per kind). An inbox item equals the realtime ``notification`` event's data (written by actors/follows.py,
actors/posts.py, actors/engagement.py), plus the caller's flags on the actor (and the caller's ``my`` on the post).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api.pagination import decode_cursor, page_of
from api.reads.posts import PostReader
from domain.present import public_media_url, rfc3339
from domain.wire.notifications import Notification, NotificationPage
from domain.wire.posts import Comment, Post
from domain.wire.users import UserSummary
from storage import graph as graph_store
from storage import notifications as store
from storage.views import comment_views


def _notification(
    row: Any, base: str, flags: dict[int, tuple[bool, bool]], posts: dict[int, Post], comments: dict[int, Comment]
) -> Notification:
    """A Notification (API.md 2): ``post`` and ``comment`` only when the row names one (a deleted post or
    comment takes its notifications with it), ``emoji`` only when the row has one."""
    actor_id = int(row["actor_id"])
    followed, follows = flags.get(actor_id, (False, False))
    media_id = row["actor_avatar_media_id"]
    return Notification(
        id=str(row["id"]),
        type=row["type"],
        actor=UserSummary(
            id=str(actor_id),
            username=row["actor_username"],
            name=row["actor_name"],
            avatar=None if media_id is None else public_media_url(base, int(media_id)),
            followed_by_me=followed,
            follows_me=follows,
        ),
        post=None if row["post_id"] is None else posts.get(int(row["post_id"])),
        comment=None if row["comment_id"] is None else comments.get(int(row["comment_id"])),
        emoji=row["emoji"],
        created_at=rfc3339(row["created_at"]),
        read=row["read_at"] is not None,
    )


async def inbox(
    pool: Any,
    settings: Any,
    posts: PostReader,
    user_id: int,
    limit: int,
    cursor: str | None,
    types: Sequence[str] | None,
) -> NotificationPage:
    """The user's notifications, newest first, read or not; only those of ``types`` when given."""
    rows = await store.list_notifications(pool, user_id, limit + 1, decode_cursor(cursor), types)
    rows, next_cursor = page_of(rows, limit, "created_at", "id")
    flags = await graph_store.viewer_flags(pool, user_id, sorted({int(r["actor_id"]) for r in rows}))
    post_ids = sorted({int(r["post_id"]) for r in rows if r["post_id"] is not None})
    found = await posts.views(pool, post_ids, user_id)
    comment_ids = sorted({int(r["comment_id"]) for r in rows if r["comment_id"] is not None})
    comments = await comment_views(pool, settings, comment_ids, user_id)
    base = settings.public_base_url
    return NotificationPage(
        items=[_notification(r, base, flags, found, comments) for r in rows], next_cursor=next_cursor
    )


async def unread(pool: Any, user_id: int) -> int:
    """How many of the user's notifications are unread, exactly."""
    return await store.count_unread(pool, user_id)


async def mark_read(pool: Any, user_id: int, up_to_id: int | None, ids: list[int] | None) -> None:
    """Mark the user's notifications read: all up to and including ``up_to_id``, or those of ``ids`` that are
    theirs."""
    if up_to_id is not None:
        await store.mark_read_up_to(pool, user_id, up_to_id)
    elif ids:
        await store.mark_read_ids(pool, user_id, ids)
