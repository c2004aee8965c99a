"""Live counts of subscribed posts (``subscribe post:<id>``): ``post.counts`` and ``comment.counts``.

A write that changes a post's or a comment's counts publishes one small ``counts.dirty`` message on the post's
topic channel (api/routes/engagement.py). Each gateway marks the post (and comments) dirty and, every
``FLUSH_S``, reads the current counts of every dirty post and comment in one query each and sends one frame per
post or comment to its subscribed sockets, encoded once per post and format, not once per socket. So a socket
gets at most one ``post.counts`` per post per 250 ms however hot the post, and always the latest counts (read
at flush time, after the writes it reports).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from api.ws.connection import Conn
from api.ws.frames import plain_frame
from storage import engagement as store

log = logging.getLogger("i9lyfe.live_counts")

FLUSH_S = 0.25


class LiveCounts:
    def __init__(self, pool: Any, subscribers: Callable[[str], set[Conn] | None]) -> None:
        self.pool = pool
        self.subscribers = subscribers
        self.dirty_posts: dict[int, str] = {}  # post id -> its channel
        self.dirty_comments: dict[int, str] = {}  # comment id -> its post's channel
        self.frames_sent = 0

    def mark(self, channel: str, data: dict[str, Any]) -> None:
        post_id = int(data["post_id"])
        self.dirty_posts[post_id] = channel
        for comment_id in data.get("comment_ids") or ():
            self.dirty_comments[int(comment_id)] = channel

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live counts flush failed")

    async def flush(self) -> None:
        posts, comments = self.dirty_posts, self.dirty_comments
        if not posts and not comments:
            return
        self.dirty_posts, self.dirty_comments = {}, {}
        async with asyncio.timeout(5.0):
            if posts:
                counts = await store.post_counts(self.pool, list(posts))
                for post_id, channel in posts.items():
                    data = {"post_id": str(post_id), **counts[post_id]}
                    self._send(channel, "post.counts", data)
            if comments:
                for row in await store.comment_counts(self.pool, list(comments)):
                    data = {
                        "comment_id": str(row["id"]),
                        "post_id": str(row["post_id"]),
                        "counts": {"reactions": row["reactions_count"], "replies": row["replies_count"]},
                    }
                    self._send(comments[int(row["id"])], "comment.counts", data)

    def _send(self, channel: str, type_: str, data: dict[str, Any]) -> None:
        conns = self.subscribers(channel)
        if not conns:
            return
        encoded: dict[str, bytes] = {}  # one encoding per format for every socket of this gateway
        for conn in list(conns):
            frame = encoded.get(conn.fmt)
            if frame is None:
                frame = encoded[conn.fmt] = plain_frame(None, type_, data, conn.fmt)
            if conn.live:
                conn.send_now(frame)
                self.frames_sent += 1
