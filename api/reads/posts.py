"""Posts for readers in api processes: the fixed parts from the process's PostCache (api/reads/post_cache.py),
the live parts from the LiveCache in Redis (storage/live_cache.py) when current, else PostgreSQL
(storage/views.py). Also the pages of posts (a user's, a hashtag's, my mentions): one query for the page, then
the posts through the reader."""

from __future__ import annotations

from typing import Any

from msgspec.structs import replace

from api.pagination import decode_cursor, page_of
from api.reads.post_cache import PostCache
from domain.errors import NotFound, Unauthenticated
from domain.wire.posts import Hashtag, Post, PostPage
from storage import engagement as engagement_store
from storage import posts as post_store
from storage import users as user_store
from storage.config import Settings
from storage.live_cache import LiveCache
from storage.views import Live, live_parts, post_views


def _with(post: Post, live: Live) -> Post:
    counts, summary, my = live
    return replace(post, counts=counts, reactions_summary=summary, my=my)


class PostReader:
    def __init__(self, settings: Settings, cache: PostCache, live: LiveCache | None) -> None:
        self.settings = settings
        self.cache = cache
        self.live = live

    def forget_author(self, author_id: int) -> None:
        self.cache.forget_author(author_id)

    def clear(self) -> None:
        self.cache.clear()

    async def views(
        self, conn: Any, post_ids: list[int], viewer_id: int | None, *, session_id: int | None = None
    ) -> dict[int, Post]:
        """Posts (API.md 2) by id, for the viewer (``my`` flags; None: anonymous). With ``session_id`` the viewer's
        session is checked (401 ``session_revoked`` when it has ended): in the same query as the read, or, when
        everything comes from the caches, by the session's deny mark in Redis.

        With the process's PostCache (api/reads/post_cache.py), posts whose fixed parts are held need only their live
        parts: from the LiveCache (storage/live_cache.py) when its entry is current, else one light query (whose
        answers are cached). The others are hydrated in full (one query) and kept."""
        if not post_ids:
            return {}
        cache = self.cache
        fixed = {pid: f for pid in post_ids if (f := cache.get(pid)) is not None}
        out: dict[int, Post] = {}
        versions: dict[int, bytes] = {}
        current: set[int] = set()
        if self.live is not None:
            found = await self.live.read(post_ids, viewer_id, session_id)
            if found.denied:
                raise Unauthenticated("This session has ended; log in again.", reason="session_revoked")
            versions, current = found.versions, found.current
            out = {pid: _with(fixed[pid], live) for pid, live in found.live.items() if pid in fixed}
        missing = [pid for pid in post_ids if pid not in fixed]
        read: dict[int, Post] = {}
        if missing:
            hydrated = await post_views(conn, self.settings, missing, viewer_id, session_id)
            for pid, post in hydrated.items():
                cache.put(pid, int(post.author.id), post)
                read[pid] = post
            out.update(hydrated)
            session_id = None  # checked by that query
        stale = [pid for pid in fixed if pid not in out]
        if stale:
            for row in await post_store.live_parts(conn, stale, viewer_id, session_id):
                if not row["session_live"]:
                    raise Unauthenticated("This session has ended; log in again.", reason="session_revoked")
                pid = int(row["id"])
                out[pid] = read[pid] = _with(fixed[pid], live_parts(row, viewer_id))
        if self.live is not None and read:
            await self.live.write(read, versions, viewer_id, current)
        return out

    async def page(self, conn: Any, viewer_id: int | None, rows: list[Any], limit: int) -> PostPage:
        """A page of posts from ``limit + 1`` rows of ``post_id, at`` (a keyset page: the extra one says there
        is more); posts gone since (or hidden) are left out."""
        rows, cursor = page_of(rows, limit, "at", "post_id")
        ids = [int(r["post_id"]) for r in rows]
        posts = await self.views(conn, ids, viewer_id)
        return PostPage(items=[posts[i] for i in ids if i in posts], next_cursor=cursor)

    async def user_posts(
        self, pool: Any, username: str, viewer_id: int | None, limit: int, cursor: str | None
    ) -> PostPage:
        """The user's posts and reposts, newest first (404 for an unknown user)."""
        owner = await user_store.find_user_by_username(pool, username)
        if owner is None:
            raise NotFound("No such user.")
        rows = await engagement_store.list_user_posts(pool, int(owner["id"]), limit + 1, decode_cursor(cursor))
        return await self.page(pool, viewer_id, rows, limit)

    async def tagged(self, pool: Any, tag: str, viewer_id: int | None, limit: int, cursor: str | None) -> PostPage:
        """The hashtag's posts, newest first."""
        rows = await post_store.list_by_tag(pool, tag, limit + 1, decode_cursor(cursor))
        return await self.page(pool, viewer_id, rows, limit)

    async def mentioning(self, pool: Any, user_id: int, limit: int, cursor: str | None) -> PostPage:
        """Posts mentioning the user, newest mention first."""
        rows = await post_store.list_mentioning(pool, user_id, limit + 1, decode_cursor(cursor))
        return await self.page(pool, user_id, rows, limit)

    async def marked(self, pool: Any, kind: str, user_id: int, limit: int, cursor: str | None) -> PostPage:
        """Posts the user saved, reacted to or commented on (``kind``), by the time of that action."""
        rows = await engagement_store.list_marked(pool, kind, user_id, limit + 1, decode_cursor(cursor))
        return await self.page(pool, user_id, rows, limit)


async def hashtag(pool: Any, tag: str) -> Hashtag:
    """A hashtag and how many posts carry it (404 when none ever did)."""
    row = await post_store.get_hashtag(pool, tag)
    if row is None:
        raise NotFound("No such hashtag.")
    return Hashtag(tag=row["tag"], posts_count=row["posts_count"])
