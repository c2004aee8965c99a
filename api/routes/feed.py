"""GET /feed: the caller's home feed (issue 12, DESIGN.md 3).

Straight to storage, no shard hop: the next window of the caller's Redis timeline, checked and merged with the
authors who are not fanned out in one PostgreSQL query (api/reads/feed.py ``FeedReader``), continued from
PostgreSQL past the timeline's end, then hydrated with one query for the posts and one for the reposters, and
encoded once. The cursor is the last entry's position; entries are time-ordered ids, so a page never shifts
while new posts arrive (they sort before the cursor).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request

from api.codec import JSON, MSGPACK, wants_msgpack
from api.contract import operation
from api.deps import BEARER_SECURITY, ctx_of, token_user
from api.pagination import CURSOR_PATTERN, decode_cursor, encode_cursor, page_parameters, read_page
from api.reads.explore import CURSOR_PATTERN as RECS_CURSOR_PATTERN
from api.reads.explore import Position
from api.responses import Encoded, encoded
from api.routes.explore import recommended_posts
from domain.errors import Unauthenticated
from domain.wire.feed import FeedItem, FeedPage

router = APIRouter(tags=["feed"])

# A position in the timeline, or (past its end) in the ranking of recommended posts that continues it.
FEED_CURSOR_PATTERN = f"(?:{CURSOR_PATTERN})|(?:{RECS_CURSOR_PATTERN})"
_FEED_CURSOR = re.compile(FEED_CURSOR_PATTERN)


@router.get(
    "/feed",
    **operation(
        "getFeed",
        ok=FeedPage,
        errors=(401, 422, 503),
        extra={**BEARER_SECURITY, "parameters": page_parameters(FEED_CURSOR_PATTERN, min_length=None)},
    ),
)
async def get_feed(request: Request) -> Encoded:
    """Your home feed, newest first: your own posts and the posts and reposts of the people you follow
    (`reposted_by` names the reposter). A post you see twice (posted, and reposted by someone you follow)
    appears once per page. Deleted posts, undone reposts and people you no longer follow never show; someone
    you start following shows up on the next read with their recent posts.

    When your timeline has nothing more, the feed keeps going with recommended posts (as `GET /explore` ranks
    them, without people you follow): those items carry `reasons` (and `reposted_by` null), and the cursor pages
    through that ranking. With the `hide_reposts` knob (`PUT /me/recommendations`) reposts are left out."""
    # A hot read: the caller and the context are read here, not through dependency resolution, and the session
    # is checked in the posts' own query (or, for an empty page, against the denylist), as GET /posts/{id} does.
    limit, cursor = read_page(request, _FEED_CURSOR, min_length=0)
    user = await token_user(request)
    ctx = ctx_of(request)
    if cursor is not None and cursor.startswith("r"):
        return await _recommended(request, ctx, user, Position.decode(cursor), limit, [])
    reader = ctx.feed_reader
    position = decode_cursor(cursor)
    below = None if position is None else position[1]
    # The page is served from the feed cache while the caller's timeline, the posts on the page, whom the caller
    # follows (and their knobs), the merged big accounts' posts and every user summary are as they were: one
    # round trip (api/response_cache.py FeedPages).
    keys = ctx.services.keys
    fmt = "m" if wants_msgpack(request.headers.get("accept")) else "j"
    key = keys("rc", "feed", f"{{{user.user_id}}}", cursor or "-", limit, fmt)
    found = await ctx.feed_pages.lookup(key, reader.cache_versions(user.user_id), keys.revoked_session(user.session_id))
    if found.denied:
        raise Unauthenticated("This session has ended; log in again.", reason="session_revoked")
    if found.body is not None:
        return Encoded(found.body, 200, MSGPACK if fmt == "m" else JSON)
    home = await reader.home(ctx.posts, user.user_id, user.session_id, below, limit)
    if not home.more:  # the timeline is done: recommended posts fill the page and the next ones follow
        return await _recommended(request, ctx, user, None, limit, home.items)
    next_cursor = None if home.next_cursor is None else encode_cursor(*home.next_cursor)
    page = encoded(request, FeedPage(items=home.items, next_cursor=next_cursor))
    if home.post_keys is not None:
        await ctx.feed_pages.store(key, found.versions, home.post_keys, home.post_versions, bytes(page.body))
    return page


async def _recommended(
    request: Request, ctx: Any, user: Any, position: Position | None, limit: int, items: list[FeedItem]
) -> Encoded:
    """``items`` (the timeline's last ones) followed by recommended posts up to ``limit``; the cursor pages
    through the same ranking (a new one without ``position``)."""
    explorer = ctx.explorer
    want = limit - len(items)
    if want <= 0:  # a full page already: the recommendations start on the next one
        snapshot, ranked = await explorer.first(user.user_id, "feed")
        next_cursor = Position(snapshot, 0).encode() if ranked else None
        return encoded(request, FeedPage(items=items, next_cursor=next_cursor))
    window = await explorer.page(user.user_id, "feed", position, want)
    shown = {item.post.id for item in items}
    for post, item, why in await recommended_posts(ctx, user.user_id, window.items):
        if post.id in shown:
            continue
        items.append(
            FeedItem(id=str(item.post_id), post=post, reposted_by=None, created_at=post.created_at, reasons=why)
        )
    following = window.following
    return encoded(request, FeedPage(items=items, next_cursor=None if following is None else following.encode()))
