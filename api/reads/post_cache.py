"""A per-process cache of the parts of a post that never change once it exists (API process only).

A post's type, caption, media, mentions, hashtags and creation time are fixed at creation (there is no post
edit); its author's summary changes only when the author edits their profile or avatar. So a reader that holds
those parts asks PostgreSQL only for what changes (counters, the viewer's flags, and whether the post still
exists: storage/posts.py ``live_parts``), a much cheaper query than the full hydration.

Bounded (LRU, ``max_posts``) and time-limited (``ttl_s``): a mentioned user's new username, for one, shows after
at most ``ttl_s``. A profile or avatar change is broadcast on the Redis channel ``cache:users``
(storage/live_cache.py ``CACHE_CHANNEL``), and each api process's gateway drops that author's posts here at once
(api/ws/gateway.py). Deleted posts need no
invalidation: ``live_parts`` has no row for them, so they are gone at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from domain.wire.posts import Post


class PostCache:
    """Posts by id as last hydrated: their fixed parts are current; their live parts (counts, summary, ``my``) are
    whatever they were then and are always replaced by the reader."""

    def __init__(self, max_posts: int = 20_000, ttl_s: float = 60.0) -> None:
        self.max_posts = max_posts
        self.ttl_s = ttl_s
        self._items: OrderedDict[int, tuple[float, int, Post]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, post_id: int) -> Post | None:
        found = self._items.get(post_id)
        if found is None:
            self.misses += 1
            return None
        expires, _author, fixed = found
        if expires < time.monotonic():
            del self._items[post_id]
            self.misses += 1
            return None
        self._items.move_to_end(post_id)
        self.hits += 1
        return fixed

    def put(self, post_id: int, author_id: int, fixed: Post) -> None:
        self._items[post_id] = (time.monotonic() + self.ttl_s, author_id, fixed)
        self._items.move_to_end(post_id)
        while len(self._items) > self.max_posts:
            self._items.popitem(last=False)

    def forget_author(self, author_id: int) -> int:
        gone = [pid for pid, (_, author, _) in self._items.items() if author == author_id]
        for pid in gone:
            del self._items[pid]
        return len(gone)

    def clear(self) -> None:
        self._items.clear()
