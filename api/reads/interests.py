"""Interests, the read side in api processes: the catalogue, one interest, its posts and the interests I follow,
straight from storage (following and unfollowing are the caller's UserShard entity's: actors/recommendations.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from api.pagination import decode_cursor, encode_cursor, keyset, page_of
from api.reads.posts import PostReader
from domain.errors import NotFound
from domain.wire.posts import PostPage
from domain.wire.recs import Interest, InterestPage
from storage import interests as store

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def interest(row: Any) -> Interest:
    return Interest(
        slug=row["slug"],
        name=row["name"],
        followers_count=int(row["followers_count"]),
        followed_by_me=bool(row["followed_by_me"]),
    )


def slug_of(value: str) -> str:
    """A slug as given in a path (any case, surrounding spaces ignored) as stored."""
    return value.strip().lower()


async def catalogue(pool: asyncpg.Pool, viewer_id: int | None, limit: int, cursor: str | None) -> InterestPage:
    """The catalogue in its fixed order (its cursor names a position in it)."""
    position = decode_cursor(cursor)
    after = None if position is None else position[1]
    rows = await store.list_interests(pool, viewer_id, after, limit + 1)
    rows, last = keyset(rows, limit, lambda row: int(row["position"]))
    next_cursor = None if last is None else encode_cursor(_EPOCH, last)
    return InterestPage(items=[interest(r) for r in rows], next_cursor=next_cursor)


async def one(pool: asyncpg.Pool, slug: str, viewer_id: int | None) -> Interest:
    row = await store.find_interest(pool, slug_of(slug), viewer_id)
    if row is None:
        raise NotFound("No such interest.")
    return interest(row)


async def posts(
    reader: PostReader, pool: asyncpg.Pool, slug: str, viewer_id: int | None, limit: int, cursor: str | None
) -> PostPage:
    """The interest's posts, newest first (404 for a slug not in the catalogue)."""
    name = slug_of(slug)
    if not await store.exists(pool, name):
        raise NotFound("No such interest.")
    rows = await store.post_page(pool, name, decode_cursor(cursor), limit + 1)
    return await reader.page(pool, viewer_id, rows, limit)


async def mine(pool: asyncpg.Pool, user_id: int, limit: int, cursor: str | None) -> InterestPage:
    """The interests I follow, newest follow first."""
    rows = await store.my_interests(pool, user_id, decode_cursor(cursor), limit + 1)
    rows, next_cursor = page_of(rows, limit, "followed_at", "position")
    return InterestPage(items=[interest(r) for r in rows], next_cursor=next_cursor)
