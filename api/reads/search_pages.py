"""The pages of GET /search as wire structs (domain/wire/search.py): ranked posts (api/reads/search.py ranks them,
the post reader hydrates them), users and hashtags (storage/search.py), one query per kind."""

from __future__ import annotations

import time
from typing import Any

from msgspec.structs import asdict

from api.pagination import keyset
from api.reads.posts import PostReader
from api.reads.search import Cursor, Search
from domain.post_text import normalize_tag
from domain.present import user_summary
from domain.wire.search import HashtagHit, PostHit, SearchPage, UserHit
from storage import graph as graph_store
from storage import search as store
from storage import users as user_store


async def posts(
    search: Search,
    reader: PostReader,
    pool: Any,
    text: str,
    scope: str,
    viewer_id: int | None,
    position: Cursor | None,
    limit: int,
) -> SearchPage:
    hits, next_cursor, corrected = await search.posts(text, scope, viewer_id, position, limit)
    found = await reader.views(pool, [pid for pid, _ in hits], viewer_id)
    items: list[Any] = [PostHit(**asdict(found[pid]), score=score) for pid, score in hits if pid in found]
    return SearchPage(
        items=items, next_cursor=None if next_cursor is None else next_cursor.encode(), corrected_query=corrected
    )


async def users(
    pool: Any, base_url: str, text: str, viewer_id: int | None, position: Cursor | None, limit: int
) -> SearchPage:
    name = text.lstrip("@")[:60] or text
    after = None if position is None else (position.score, position.last)
    rows = await store.users(pool, text=name, viewer_id=viewer_id, after=after, limit=limit + 1)
    now = time.time() if position is None else position.now
    rows, last = keyset(rows, limit, lambda row: Cursor(now, float(row["score"]), int(row["id"])))
    ids = [int(r["id"]) for r in rows]
    people = {int(r["id"]): r for r in await user_store.get_users(pool, ids)} if ids else {}
    flags = await graph_store.viewer_flags(pool, viewer_id, ids) if viewer_id is not None else {}
    items: list[Any] = []
    for row in rows:
        person = people.get(int(row["id"]))
        if person is None:
            continue
        pair = flags.get(int(row["id"]))
        summary = (
            user_summary(person, base_url)
            if pair is None
            else user_summary(person, base_url, followed_by_me=pair[0], follows_me=pair[1])
        )
        items.append(UserHit(**asdict(summary), score=float(row["score"])))
    next_cursor = None if last is None else last.encode()
    return SearchPage(items=items, next_cursor=next_cursor, corrected_query=None)


async def hashtags(pool: Any, text: str, position: Cursor | None, limit: int) -> SearchPage:
    tag = normalize_tag(text) or text.lstrip("#").lower()
    now = time.time() if position is None else position.now
    after = None if position is None else (position.score, position.last)
    rows = await store.hashtags(pool, text=tag[:100], now=now, after=after, limit=limit + 1)
    rows, last = keyset(rows, limit, lambda row: Cursor(now, float(row["score"]), int(row["tiebreak"])))
    items: list[Any] = [
        HashtagHit(tag=r["tag"], posts_count=int(r["posts_count"]), score=float(r["score"])) for r in rows
    ]
    next_cursor = None if last is None else last.encode()
    return SearchPage(items=items, next_cursor=next_cursor, corrected_query=None)
