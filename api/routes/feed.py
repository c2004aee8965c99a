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
from api.deps import BEARER_SECURITY, ctx_of, token_user
from api.pagination import CURSOR_PATTERN, decode_cursor, encode_cursor, page_parameters, read_page
from api.reads import explore
from api.reads.explore import CURSOR_PATTERN as RECS_CURSOR_PATTERN
from api.reads.explore import Position
from api.responses import Encoded, encoded
from api.routes.explore import recommended_posts
from api.schemas.common import error_responses
from api.schemas.feed import FeedPage
from domain.errors import Unauthenticated
from domain.present import rfc3339, summary
from storage import live_cache
from storage import users as user_store
from storage.views import public_post

router = APIRouter(tags=["feed"])

# A position in the timeline, or (past its end) in the ranking of recommended posts that continues it.
FEED_CURSOR_PATTERN = f"(?:{CURSOR_PATTERN})|(?:{RECS_CURSOR_PATTERN})"
_FEED_CURSOR = re.compile(FEED_CURSOR_PATTERN)


def _rfc3339(value: Any) -> str:
    return rfc3339(value)


@router.get(
    "/feed",
    response_model=FeedPage,
    responses=error_responses(401, 422, 503),
    openapi_extra={**BEARER_SECURITY, "parameters": page_parameters(FEED_CURSOR_PATTERN, min_length=None)},
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
    versions = [
        keys.timeline_version(user.user_id),
        live_cache.follows_version_key(keys, user.user_id),
        live_cache.merged_version_key(keys),
        live_cache.profiles_version_key(keys),
    ]
    found = await ctx.feed_pages.lookup(key, versions, keys.revoked_session(user.session_id))
    if found.denied:
        raise Unauthenticated("This session has ended; log in again.", reason="session_revoked")
    if found.body is not None:
        return Encoded(found.body, 200, MSGPACK if fmt == "m" else JSON)
    window = await reader.first_window(user.user_id, below, limit)
    in_window = list(dict.fromkeys(e.post_id for e in window.entries))
    post_keys = [live_cache.version_key(keys, pid) for pid in in_window]
    # The posts' versions, read before the posts are: a write that lands meanwhile makes the page stale.
    read = await ctx.services.redis.mget(post_keys) if post_keys else []
    post_versions = {pid: v if isinstance(v, bytes) else b"" for pid, v in zip(in_window, read, strict=True)}
    services = ctx.services
    hide_reposts = (await explore.get_knobs(services.pool, user.user_id)).hide_reposts
    rows, more = await reader.page(user.user_id, below, limit, window, hide_reposts=hide_reposts)
    last = rows[-1] if rows else None
    post_ids = list(dict.fromkeys(r.post_id for r in rows))
    reposters = list({r.via for r in rows if r.via})
    views = await ctx.posts.views(services.pool, post_ids, user.user_id, session_id=user.session_id)
    if not views and await services.is_session_denied(user.session_id):
        raise Unauthenticated("This session has ended; log in again.", reason="session_revoked")
    people = {int(p["id"]): p for p in await user_store.get_users(services.pool, reposters)} if reposters else {}
    base = services.settings.public_base_url
    items = []
    seen: set[int] = set()
    for row in rows:
        view = views.get(row.post_id)
        if view is None or row.post_id in seen:
            continue
        if row.via and row.via not in people:
            continue
        seen.add(row.post_id)
        items.append(
            {
                "id": str(row.entry_id),
                "post": public_post(view),
                "reposted_by": summary(people[row.via], base) if row.via else None,
                "created_at": _rfc3339(row.at),
            }
        )
    if not more:  # the timeline is done: recommended posts fill the page and the next ones follow
        return await _recommended(request, ctx, user, None, limit, items)
    next_cursor = encode_cursor(last.at, last.entry_id) if last is not None else None
    page = encoded(request, {"items": items, "next_cursor": next_cursor})
    if post_ids and all(pid in post_versions for pid in post_ids):  # no merged or older posts on it
        await ctx.feed_pages.store(
            key,
            found.versions,
            [live_cache.version_key(keys, pid) for pid in post_ids],
            [post_versions[pid] for pid in post_ids],
            bytes(page.body),
        )
    return page


async def _recommended(
    request: Request, ctx: Any, user: Any, position: Position | None, limit: int, items: list[dict[str, Any]]
) -> Encoded:
    """``items`` (the timeline's last ones) followed by recommended posts up to ``limit``; the cursor pages
    through the same ranking (a new one without ``position``)."""
    explorer = ctx.explorer
    want = limit - len(items)
    if want <= 0:  # a full page already: the recommendations start on the next one
        snapshot, ranked = await explorer.first(user.user_id, "feed")
        next_cursor = Position(snapshot, 0).encode() if ranked else None
        return encoded(request, {"items": items, "next_cursor": next_cursor})
    window = await explorer.page(user.user_id, "feed", position, want)
    shown = {item["post"]["id"] for item in items}
    for view, item, why in await recommended_posts(ctx, user.user_id, window.items):
        if view["id"] in shown:
            continue
        items.append(
            {
                "id": str(item.post_id),
                "post": public_post(view),
                "reposted_by": None,
                "created_at": view["created_at"],
                "reasons": why,
            }
        )
    following = window.following
    return encoded(request, {"items": items, "next_cursor": None if following is None else following.encode()})
