"""The home feed's read side (DESIGN.md 3), in api processes: a page is the timeline's next window, checked and
merged in one query (storage/feed.py: deleted posts, undone reposts and unfollowed authors are dropped; big
accounts are merged in), continued from PostgreSQL past the timeline's end, then hydrated with one query per kind.
A missing timeline (new or long-inactive user, Redis flushed) is rebuilt first. The write side (fan-out) is
actors/fanout.py.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg

from api.reads import explore
from api.reads.posts import PostReader
from domain.errors import Unauthenticated
from domain.present import rfc3339, user_summary
from domain.wire.feed import FeedItem
from storage import feed as feed_store
from storage import live_cache
from storage import users as user_store
from storage.timelines import Entry, Timelines, Window

log = logging.getLogger("i9lyfe.feed")

REBUILD_ENTRIES = 200  # a rebuilt timeline holds the newest 200 entries; older ones are read from PostgreSQL
MAX_WINDOWS = 4  # timeline windows one page may read when many entries were dropped (deleted, unfollowed)


@dataclass(frozen=True)
class FeedRow:
    entry_id: int
    post_id: int
    via: int
    at: dt.datetime


@dataclass(frozen=True)
class Home:
    """A page of the home feed read from the timeline: its items, whether the timeline goes on past them (its
    position is ``next_cursor``), and, when the page may be cached whole (api/response_cache.py FeedPages), the
    version keys of its posts and the versions read before they were."""

    items: list[FeedItem]
    more: bool
    next_cursor: tuple[dt.datetime, int] | None
    post_keys: list[str] | None  # None: not to be cached (merged or older posts on it)
    post_versions: list[bytes]


class FeedReader:
    def __init__(self, services: Any) -> None:
        self.services = services
        self.timelines: Timelines = services.timelines
        self.threshold = services.settings.fanout_max_followers

    async def rebuild(self, user_id: int) -> int:
        """Make the user's timeline from PostgreSQL: created first (fan-outs land in it from then on), then
        filled with the newest entries; marked complete when that is all there is."""
        await self.timelines.start(user_id)
        rows = await feed_store.entries_below(self.services.pool, user_id, None, REBUILD_ENTRIES)
        await self.timelines.merge(user_id, [Entry.of_row(r) for r in rows], complete=len(rows) < REBUILD_ENTRIES)
        return len(rows)

    async def ensure(self, user_id: int) -> bool:
        """Keep an existing timeline alive or rebuild a missing one (a socket connects); True if rebuilt."""
        if await self.timelines.touch(user_id):
            return False
        await self.rebuild(user_id)
        return True

    @staticmethod
    def window_size(limit: int) -> int:
        return 2 * limit + 8  # room for entries the check drops

    async def first_window(self, user_id: int, below: int | None, limit: int) -> Window:
        """The timeline's window a page of ``limit`` below entry ``below`` starts from (rebuilt when missing)."""
        size = self.window_size(limit)
        window = await self.timelines.window(user_id, below, size)
        if not window.exists:
            await self.rebuild(user_id)
            window = await self.timelines.window(user_id, below, size)
        return window

    async def page(
        self, user_id: int, below: int | None, limit: int, window: Window | None = None, *, hide_reposts: bool = False
    ) -> tuple[list[FeedRow], bool]:
        """Up to ``limit`` entries older than entry ``below``, newest first, and whether more follow (from
        ``window``, the page's ``first_window``, when the caller has read it already). With ``hide_reposts`` the
        timeline's reposts are passed over (kept in it: only the reader's knob hides them)."""
        want = limit + 1
        size = self.window_size(limit)
        if window is None:
            window = await self.first_window(user_id, below, limit)

        def shown(entries: list[Entry]) -> list[Entry]:
            return [e for e in entries if not e.via] if hide_reposts else list(entries)

        candidates = shown(window.entries)
        read = list(window.entries)  # every entry the windows held (the page is decided down to the lowest)
        rows: list[asyncpg.Record] = []
        for round_ in range(MAX_WINDOWS):
            exhausted = not window.full
            floor = 0 if exhausted else (read[-1].entry_id if read else 0)
            fallback = None
            if exhausted and not window.complete:
                fallback = read[-1].entry_id if read else (below or feed_store.MAX_ENTRY)
            rows = await feed_store.page_entries(
                self.services.pool,
                user_id,
                [(e.entry_id, e.post_id, e.author_id, e.via) for e in candidates],
                threshold=self.threshold,
                below=below,
                floor=floor,
                fallback_below=fallback,
                limit=want,
            )
            if hide_reposts:  # the merged accounts' and PostgreSQL's reposts too
                rows = [r for r in rows if not r["via"]]
            if len(rows) >= want or exhausted or round_ == MAX_WINDOWS - 1:
                break
            window = await self.timelines.window(user_id, read[-1].entry_id if read else 0, size)
            read += window.entries
            candidates += shown(window.entries)
        out = [FeedRow(int(r["entry_id"]), int(r["post_id"]), int(r["via"]), r["at"]) for r in rows]
        await self._clean(user_id, candidates, out, want)
        return out[:limit], len(out) > limit

    def cache_versions(self, user_id: int) -> list[str]:
        """The version keys a cached page of the user's feed depends on besides its posts: the timeline, whom
        the user follows (and their knobs), the merged big accounts' posts and every user summary."""
        keys = self.services.keys
        return [
            keys.timeline_version(user_id),
            live_cache.follows_version_key(keys, user_id),
            live_cache.merged_version_key(keys),
            live_cache.profiles_version_key(keys),
        ]

    async def home(self, posts: PostReader, user_id: int, session_id: int, below: int | None, limit: int) -> Home:
        """A page of the user's feed below entry ``below`` (None: the top), hydrated for them (``session_id``
        checked with the posts, or, for an empty page, against the denylist). A post seen twice (posted, and
        reposted by someone followed) shows once; with the ``hide_reposts`` knob reposts are left out."""
        services = self.services
        window = await self.first_window(user_id, below, limit)
        in_window = list(dict.fromkeys(e.post_id for e in window.entries))
        post_keys = [live_cache.version_key(services.keys, pid) for pid in in_window]
        # The posts' versions, read before the posts are: a write that lands meanwhile makes the page stale.
        read = await services.redis.mget(post_keys) if post_keys else []
        post_versions = {pid: v if isinstance(v, bytes) else b"" for pid, v in zip(in_window, read, strict=True)}
        hide_reposts = (await explore.get_knobs(services.pool, user_id)).hide_reposts
        rows, more = await self.page(user_id, below, limit, window, hide_reposts=hide_reposts)
        post_ids = list(dict.fromkeys(r.post_id for r in rows))
        reposters = list({r.via for r in rows if r.via})
        views = await posts.views(services.pool, post_ids, user_id, session_id=session_id)
        if not views and await services.is_session_denied(session_id):
            raise Unauthenticated("This session has ended; log in again.", reason="session_revoked")
        people = {int(p["id"]): p for p in await user_store.get_users(services.pool, reposters)} if reposters else {}
        base = services.settings.public_base_url
        shown = {via: user_summary(person, base) for via, person in people.items()}
        items = []
        seen: set[int] = set()
        for row in rows:
            post = views.get(row.post_id)
            if post is None or row.post_id in seen:
                continue
            if row.via and row.via not in shown:
                continue
            seen.add(row.post_id)
            items.append(
                FeedItem(
                    id=str(row.entry_id),
                    post=post,
                    reposted_by=shown[row.via] if row.via else None,
                    created_at=rfc3339(row.at),
                )
            )
        last = rows[-1] if rows else None
        cacheable = bool(post_ids) and all(pid in post_versions for pid in post_ids)  # no merged or older posts
        return Home(
            items=items,
            more=more,
            next_cursor=None if last is None else (last.at, last.entry_id),
            post_keys=[live_cache.version_key(services.keys, pid) for pid in post_ids] if cacheable else None,
            post_versions=[post_versions[pid] for pid in post_ids] if cacheable else [],
        )

    async def _clean(self, user_id: int, candidates: list[Entry], out: list[FeedRow], want: int) -> None:
        """Lazy cleanup: timeline entries the check dropped (deleted posts, undone reposts, unfollowed authors)
        leave the timeline. Only those the page got past count: below its last row nothing was decided."""
        kept = {row.entry_id for row in out}
        last = out[-1].entry_id if len(out) >= want else 0
        dropped = [e for e in candidates if e.entry_id not in kept and e.entry_id > last]
        if dropped:
            try:
                await self.timelines.remove(user_id, dropped)
            except Exception as exc:  # the next read drops them again
                log.warning("timeline cleanup failed", extra={"fields": {"error": repr(exc)}})
