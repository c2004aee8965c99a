"""Comments and reactions for readers in api processes: a post's comments, a comment's replies, one comment, and
who reacted to a post or a comment. Straight to storage, one query per kind (storage/engagement.py,
storage/views.py), as wire structs (domain/wire/posts.py)."""

from __future__ import annotations

from typing import Any

from api.pagination import decode_cursor, page_of
from domain.chat import check_emoji
from domain.errors import NotFound
from domain.present import rfc3339, user_summary
from domain.wire.posts import Comment, CommentPage, Reactor, ReactorPage
from storage import engagement as store
from storage import posts as post_store
from storage.live_cache import comments_version_key, profiles_version_key
from storage.redis import Keys
from storage.views import comment_views


def page_versions(keys: Keys, post_id: int) -> list[str]:
    """The version keys a cached page of the post's comments depends on (api/response_cache.py): its comments
    (and their counts and reactions) and every user summary."""
    return [comments_version_key(keys, post_id), profiles_version_key(keys)]


async def comment_page(
    pool: Any,
    settings: Any,
    viewer_id: int | None,
    post_id: int | None,
    parent_id: int | None,
    limit: int,
    cursor: str | None,
) -> CommentPage:
    """A post's comments (``post_id``), or a comment's replies (``parent_id``), newest first (404 when there is
    no such post or comment)."""
    async with pool.acquire() as conn:  # one connection for the request's two or three queries
        rows = await store.list_comments(conn, post_id, parent_id, limit + 1, decode_cursor(cursor))
        if not rows:  # an empty page: is there such a post (comment) at all?
            if post_id is not None:
                if not await post_store.post_exists(conn, post_id):
                    raise NotFound("No such post.")
            elif await store.get_comment(conn, parent_id) is None:  # type: ignore[arg-type]
                raise NotFound("No such comment.")
        rows, next_cursor = page_of(rows, limit, "at", "id")
        ids = [int(r["id"]) for r in rows]
        views = await comment_views(conn, settings, ids, viewer_id)
    return CommentPage(items=[views[i] for i in ids if i in views], next_cursor=next_cursor)


async def comment(pool: Any, settings: Any, comment_id: int, viewer_id: int | None) -> Comment:
    views = await comment_views(pool, settings, [comment_id], viewer_id)
    found = views.get(comment_id)
    if found is None:
        raise NotFound("No such comment.")
    return found


async def _reactors(
    pool: Any, settings: Any, table: str, column: str, target: int, emoji: str | None, limit: int, cursor: str | None
) -> ReactorPage:
    chosen = None if emoji is None else check_emoji(emoji)
    rows = await store.list_reactors(pool, table, column, target, chosen, limit + 1, decode_cursor(cursor))
    rows, next_cursor = page_of(rows, limit, "at", "id")
    base = settings.public_base_url
    items = [
        Reactor(
            user=user_summary(
                {
                    "id": r["user_id"],
                    "username": r["user_username"],
                    "name": r["user_name"],
                    "avatar_media_id": r["user_avatar_media_id"],
                },
                base,
            ),
            emoji=r["emoji"],
            created_at=rfc3339(r["at"]),
        )
        for r in rows
    ]
    return ReactorPage(items=items, next_cursor=next_cursor)


async def post_reactors(
    pool: Any, settings: Any, post_id: int, emoji: str | None, limit: int, cursor: str | None
) -> ReactorPage:
    """Who reacted to the post (with ``emoji`` only, when given: 422 unless one emoji), newest first (404: no
    such post)."""
    if not await post_store.post_exists(pool, post_id):
        raise NotFound("No such post.")
    return await _reactors(pool, settings, "post_reactions", "post_id", post_id, emoji, limit, cursor)


async def comment_reactors(
    pool: Any, settings: Any, comment_id: int, emoji: str | None, limit: int, cursor: str | None
) -> ReactorPage:
    """Who reacted to the comment (with ``emoji`` only, when given: 422 unless one emoji), newest first (404: no
    such comment)."""
    if await store.get_comment(pool, comment_id) is None:
        raise NotFound("No such comment.")
    return await _reactors(pool, settings, "comment_reactions", "comment_id", comment_id, emoji, limit, cursor)
