"""People for readers, straight from storage (no actor hop): the caller's own account, profiles and the follow
lists, each as its wire struct (domain/wire/users.py). A page is hydrated with one query per kind: the users with
their follow rows, then the viewer's flags for the whole page (storage/graph.py)."""

from __future__ import annotations

import asyncpg

from api.pagination import decode_cursor, page_of
from domain.errors import NotFound, Unauthenticated
from domain.present import me, profile, user_summary
from domain.wire.users import Me, Profile, UserPage
from storage import graph as graph_store
from storage import users as user_store
from storage.errors import RowNotFound


async def own_account(pool: asyncpg.Pool, base_url: str, user_id: int, session_id: int) -> Me:
    """The caller's account, and its session checked, in one round trip (instead of the Redis denylist)."""
    try:
        row = await user_store.get_user_of_session(pool, user_id, session_id)
    except RowNotFound as exc:
        raise NotFound("This account no longer exists.") from exc
    if not row["session_live"]:
        raise Unauthenticated("This session has ended; log in again.", reason="session_revoked")
    return me(row, base_url)


async def _user(pool: asyncpg.Pool, username: str) -> asyncpg.Record:
    row = await user_store.find_user_by_username(pool, username)
    if row is None:
        raise NotFound("No such user.")
    return row


async def user_profile(pool: asyncpg.Pool, base_url: str, username: str, viewer_id: int | None) -> Profile:
    """A profile with its counts; the viewer's flags only with a viewer."""
    row = await _user(pool, username)
    if viewer_id is None:
        return profile(row, base_url)
    user_id = int(row["id"])
    followed, follows = (await graph_store.viewer_flags(pool, viewer_id, [user_id])).get(user_id, (False, False))
    return profile(row, base_url, followed_by_me=followed, follows_me=follows)


async def follow_page(
    pool: asyncpg.Pool,
    base_url: str,
    username: str,
    viewer_id: int | None,
    limit: int,
    cursor: str | None,
    *,
    followers: bool,
) -> UserPage:
    """Those who follow ``username`` (``followers``) or whom it follows, newest follow first, with the viewer's
    flags on each (with a viewer)."""
    after = decode_cursor(cursor)
    owner = await _user(pool, username)
    fetch = graph_store.followers_page if followers else graph_store.following_page
    rows = await fetch(pool, int(owner["id"]), limit + 1, after)
    rows, next_cursor = page_of(rows, limit, "followed_at", "id")
    if viewer_id is None:
        return UserPage(items=[user_summary(r, base_url) for r in rows], next_cursor=next_cursor)
    flags = await graph_store.viewer_flags(pool, viewer_id, [int(r["id"]) for r in rows])
    items = []
    for r in rows:
        followed, follows = flags.get(int(r["id"]), (False, False))
        items.append(user_summary(r, base_url, followed_by_me=followed, follows_me=follows))
    return UserPage(items=items, next_cursor=next_cursor)
