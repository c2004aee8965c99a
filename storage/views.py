"""Posts and comments as wire structs (domain/wire/posts.py) for a viewer, hydrated with one query per kind
(storage/posts.py ``hydrate``, storage/engagement.py ``hydrate_comments``). Uncached: the api processes read
posts through their caches (api/reads/posts.py); the shards, which write, read them here.
"""

from __future__ import annotations

from typing import Any

import orjson

from domain.errors import Unauthenticated
from domain.present import media, public_media_url, rfc3339
from domain.wire.posts import Comment, CommentCounts, CommentMy, Post, PostCounts, PostMy
from domain.wire.users import UserSummary
from storage import engagement as engagement_store
from storage import posts as post_store
from storage.media.backends import url_signer

NOBODY = PostMy(reaction=None, reposted=False, saved=False)  # the `my` of an anonymous reader (frozen: shared)
COUNTERS = ("reactions", "comments", "reposts", "saves")

# The parts of a post that change: its counts, its reactions summary and the reader's own flags.
Live = tuple[PostCounts, dict[str, int], PostMy]


def live_parts(row: Any, viewer_id: int | None) -> Live:
    """The live parts of a hydrated row (storage/posts.py ``hydrate`` or ``live_parts``)."""
    counters = row["counters"]
    counters = {} if counters is None else orjson.loads(counters) if isinstance(counters, str) else counters
    get = counters.get
    counts = PostCounts(
        reactions=int(get("reactions", 0)),
        comments=int(get("comments", 0)),
        reposts=int(get("reposts", 0)),
        saves=int(get("saves", 0)),
    )
    summary = {k[6:]: int(n) for k, n in counters.items() if k.startswith("emoji:") and int(n) > 0}
    my = (
        PostMy(reaction=row["my_reaction"], reposted=row["my_reposted"], saved=row["my_saved"])
        if viewer_id is not None
        else NOBODY
    )
    return counts, summary, my


def _summary(row: Any, prefix: str, base: str) -> UserSummary:
    """The UserSummary of a row's ``<prefix>id, <prefix>username, ...`` columns (no viewer flags)."""
    media_id = row[prefix + "avatar_media_id"]
    return UserSummary(
        id=str(row[prefix + "id"]),
        username=row[prefix + "username"],
        name=row[prefix + "name"],
        avatar=None if media_id is None else public_media_url(base, int(media_id)),
    )


async def post_views(
    conn: Any, settings: Any, post_ids: list[int], viewer_id: int | None, session_id: int | None = None
) -> dict[int, Post]:
    """Posts by id for the viewer (``my``; None: anonymous), one query; with ``session_id`` the viewer's session
    is checked in it (401 ``session_revoked`` when it has ended)."""
    signer = url_signer(settings)
    base = settings.public_base_url
    out: dict[int, Post] = {}
    for row in await post_store.hydrate(conn, post_ids, viewer_id, session_id):
        if not row["session_live"]:
            raise Unauthenticated("This session has ended; log in again.", reason="session_revoked")
        pid = int(row["id"])
        rows = orjson.loads(row["media"]) if isinstance(row["media"], str) else row["media"]
        counts, summary, my = live_parts(row, viewer_id)
        out[pid] = Post(
            id=str(pid),
            author=_summary(row, "author_", base),
            type=row["type"],
            caption=row["caption"],
            media=[media(base, signer, m) for m in rows],
            mentions=list(row["mentions"]),
            hashtags=list(row["tags"]),
            counts=counts,
            reactions_summary=summary,
            my=my,
            created_at=rfc3339(row["created_at"]),
        )
    return out


async def comment_views(conn: Any, settings: Any, comment_ids: list[int], viewer_id: int | None) -> dict[int, Comment]:
    """Comments by id for the viewer (``my``), one query."""
    if not comment_ids:
        return {}
    signer = url_signer(settings)
    base = settings.public_base_url
    out = {}
    for row in await engagement_store.hydrate_comments(conn, comment_ids, viewer_id):
        cid = int(row["id"])
        media_row = row["media"]
        if isinstance(media_row, str):
            media_row = orjson.loads(media_row)
        out[cid] = Comment(
            id=str(cid),
            post_id=str(row["post_id"]),
            parent_id=None if row["parent_id"] is None else str(row["parent_id"]),
            author=_summary(row, "user_", base),
            text=row["text"],
            media=None if media_row is None else media(base, signer, media_row),
            mentions=list(row["mentions"]),
            counts=CommentCounts(reactions=row["reactions_count"], replies=row["replies_count"]),
            my=CommentMy(reaction=row["my_reaction"]),
            created_at=rfc3339(row["created_at"]),
        )
    return out
