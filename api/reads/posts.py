"""Posts for readers in api processes: the fixed parts from the process's PostCache (api/reads/post_cache.py),
the live parts from the LiveCache in Redis (storage/live_cache.py) when current, else PostgreSQL
(storage/views.py)."""

from __future__ import annotations

from typing import Any

from api.reads.post_cache import PostCache
from domain.errors import Unauthenticated
from storage import posts as post_store
from storage.config import Settings
from storage.live_cache import LiveCache
from storage.views import FIXED_KEYS, live_parts, post_views


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
    ) -> dict[int, dict[str, Any]]:
        """Post objects (API.md 2) by id, for the viewer (``my`` flags; None: anonymous). Each carries a private
        ``_author`` (the author's row) for callers that need it; ``public_post`` drops it. With ``session_id`` the
        viewer's session is checked (401 ``session_revoked`` when it has ended): in the same query as the read, or,
        when everything comes from the caches, by the session's deny mark in Redis.

        With the process's PostCache (api/reads/post_cache.py), posts whose fixed parts are held need only their live
        parts: from the LiveCache (storage/live_cache.py) when its entry is current, else one light query (whose
        answers are cached). The others are hydrated in full (one query) and their fixed parts kept."""
        if not post_ids:
            return {}
        cache = self.cache
        fixed = {pid: f for pid in post_ids if (f := cache.get(pid)) is not None}
        out: dict[int, dict[str, Any]] = {}
        versions: dict[int, bytes] = {}
        current: set[int] = set()
        if self.live is not None:
            found = await self.live.read(post_ids, viewer_id, session_id)
            if found.denied:
                raise Unauthenticated("This session has ended; log in again.", reason="session_revoked")
            versions, current = found.versions, found.current
            out = {pid: {**fixed[pid], **live} for pid, live in found.live.items() if pid in fixed}
        missing = [pid for pid in post_ids if pid not in fixed]
        read: dict[int, dict[str, Any]] = {}
        if missing:
            hydrated = await post_views(conn, self.settings, missing, viewer_id, session_id)
            for pid, view in hydrated.items():
                cache.put(pid, int(view["_author"]["author_id"]), {k: view[k] for k in FIXED_KEYS})
                read[pid] = view
            out.update(hydrated)
            session_id = None  # checked by that query
        stale = [pid for pid in fixed if pid not in out]
        if stale:
            for row in await post_store.live_parts(conn, stale, viewer_id, session_id):
                if not row["session_live"]:
                    raise Unauthenticated("This session has ended; log in again.", reason="session_revoked")
                pid = int(row["id"])
                out[pid] = read[pid] = {**fixed[pid], **live_parts(row, viewer_id)}
        if self.live is not None and read:
            await self.live.write(read, versions, viewer_id, current)
        return out
