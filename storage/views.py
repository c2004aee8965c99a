"""Posts and comments as wire objects (API.md 2) for a viewer, hydrated with one query per kind
(storage/posts.py ``hydrate``, storage/engagement.py ``hydrate_comments``). Uncached: the api processes read
posts through their caches (api/reads/posts.py); the shards, which write, read them here.
"""

from __future__ import annotations

from typing import Any

import orjson

from domain.errors import Unauthenticated
from domain.present import media_view, rfc3339, summary
from storage import engagement as engagement_store
from storage import posts as post_store
from storage.media.backends import url_signer

NOBODY = {"reaction": None, "reposted": False, "saved": False}  # the `my` of an anonymous reader
FIXED_KEYS = ("id", "author", "type", "caption", "media", "mentions", "hashtags", "created_at", "_author")


def public_post(view: dict[str, Any]) -> dict[str, Any]:
    """The wire Post: the view without its private hydration keys."""
    return {k: v for k, v in view.items() if not k.startswith("_")}


def live_parts(row: Any, viewer_id: int | None) -> dict[str, Any]:
    counters = row["counters"]
    counters = {} if counters is None else orjson.loads(counters) if isinstance(counters, str) else counters
    return {
        "counts": {name: int(counters.get(name, 0)) for name in ("reactions", "comments", "reposts", "saves")},
        "reactions_summary": {k[6:]: int(n) for k, n in counters.items() if k.startswith("emoji:") and int(n) > 0},
        "my": (
            {"reaction": row["my_reaction"], "reposted": row["my_reposted"], "saved": row["my_saved"]}
            if viewer_id is not None
            else dict(NOBODY)
        ),
    }


async def post_views(
    conn: Any, settings: Any, post_ids: list[int], viewer_id: int | None, session_id: int | None = None
) -> dict[int, dict[str, Any]]:
    signer = url_signer(settings)
    base = settings.public_base_url
    out: dict[int, dict[str, Any]] = {}
    for row in await post_store.hydrate(conn, post_ids, viewer_id, session_id):
        if not row["session_live"]:
            raise Unauthenticated("This session has ended; log in again.", reason="session_revoked")
        pid = int(row["id"])
        author = {k: row[k] for k in row.keys() if k.startswith("author_")}  # noqa: SIM118 (a Record)
        media = orjson.loads(row["media"]) if isinstance(row["media"], str) else row["media"]
        out[pid] = {
            "id": str(pid),
            "author": summary(
                {
                    "id": row["author_id"],
                    "username": row["author_username"],
                    "name": row["author_name"],
                    "avatar_media_id": row["author_avatar_media_id"],
                },
                base,
            ),
            "type": row["type"],
            "caption": row["caption"],
            "media": [media_view(base, signer, m) for m in media],
            "mentions": list(row["mentions"]),
            "hashtags": list(row["tags"]),
            **live_parts(row, viewer_id),
            "created_at": rfc3339(row["created_at"]),
            "_author": author,
        }
    return out


async def comment_views(
    conn: Any, settings: Any, comment_ids: list[int], viewer_id: int | None
) -> dict[int, dict[str, Any]]:
    """Comment objects (API.md 2) by id for the viewer, one query per kind."""
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
        out[cid] = {
            "id": str(cid),
            "post_id": str(row["post_id"]),
            "parent_id": None if row["parent_id"] is None else str(row["parent_id"]),
            "author": summary(
                {
                    "id": row["author_id"],
                    "username": row["user_username"],
                    "name": row["user_name"],
                    "avatar_media_id": row["user_avatar_media_id"],
                },
                base,
            ),
            "text": row["text"],
            "media": None if media_row is None else media_view(base, signer, media_row),
            "mentions": list(row["mentions"]),
            "counts": {"reactions": row["reactions_count"], "replies": row["replies_count"]},
            "my": {"reaction": row["my_reaction"]},
            "created_at": rfc3339(row["created_at"]),
        }
    return out
