"""Users aggregate: SQL for the users table."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from storage.errors import RowNotFound

# The unique constraints a user's own input can violate (migration 0001); any other one is a bug, such as an id
# minted twice.
USERNAME_UNIQUE = "users_username_key"
EMAIL_UNIQUE = "users_email_key"

USER_COLUMNS = (
    "id, username, email, name, bio, birthday, avatar_media_id, followers_count, following_count, "
    "posts_count, last_seen, created_at"
)


async def insert_user(
    conn: asyncpg.Connection,
    *,
    user_id: int,
    username: str,
    email: str,
    name: str,
    bio: str,
    birthday: dt.date,
    password_hash: str,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"""INSERT INTO users (id, username, email, name, bio, birthday, password_hash)
            VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {USER_COLUMNS}""",
        user_id,
        username,
        email,
        name,
        bio,
        birthday,
        password_hash,
    )
    assert row is not None
    return row


async def get_user(conn: asyncpg.Connection | asyncpg.Pool, user_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", user_id)
    if row is None:
        raise RowNotFound(f"user {user_id}")
    return row


async def get_user_of_session(conn: asyncpg.Connection | asyncpg.Pool, user_id: int, session_id: int) -> asyncpg.Record:
    """The user row with ``session_live``: whether ``session_id`` is this user's, not revoked and not expired
    (one round trip for a read and its session check). ``RowNotFound`` when the user is gone."""
    row = await conn.fetchrow(
        f"""SELECT {USER_COLUMNS}, EXISTS (SELECT 1 FROM sessions s WHERE s.id = $2 AND s.user_id = users.id
                   AND s.revoked_at IS NULL AND s.expires_at > now()) AS session_live
            FROM users WHERE id = $1""",
        user_id,
        session_id,
    )
    if row is None:
        raise RowNotFound(f"user {user_id}")
    return row


async def get_users(conn: asyncpg.Connection | asyncpg.Pool, user_ids: list[int]) -> list[asyncpg.Record]:
    """The rows of these users (missing ones are left out), in no particular order."""
    return list(await conn.fetch(f"SELECT {USER_COLUMNS} FROM users WHERE id = ANY($1::bigint[])", user_ids))


async def find_user_by_username(conn: asyncpg.Connection | asyncpg.Pool, username: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE username = $1", username.lower())


async def find_login(conn: asyncpg.Connection | asyncpg.Pool, login: str) -> asyncpg.Record | None:
    """User row plus password hash, by email or username (both stored lower-case)."""
    login = login.strip().lower()
    column = "email" if "@" in login else "username"
    return await conn.fetchrow(f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE {column} = $1", login)


async def find_user_id_by_email(conn: asyncpg.Connection | asyncpg.Pool, email: str) -> int | None:
    value = await conn.fetchval("SELECT id FROM users WHERE email = $1", email)
    return int(value) if value is not None else None


async def email_exists(conn: asyncpg.Connection | asyncpg.Pool, email: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE email = $1)", email))


async def update_profile(conn: asyncpg.Connection, user_id: int, changes: dict[str, Any]) -> asyncpg.Record:
    """Update whitelisted profile columns; ``changes`` keys come from code, never from the client."""
    allowed = {"name", "bio", "birthday", "username", "avatar_media_id"}
    bad = set(changes) - allowed
    if bad:
        raise ValueError(f"not updatable: {sorted(bad)}")
    if not changes:
        return await get_user(conn, user_id)
    names = sorted(changes)
    sets = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
    row = await conn.fetchrow(
        f"UPDATE users SET {sets}, updated_at = now() WHERE id = $1 RETURNING {USER_COLUMNS}",
        user_id,
        *(changes[n] for n in names),
    )
    if row is None:
        raise RowNotFound(f"user {user_id}")
    return row


async def update_password(conn: asyncpg.Connection, user_id: int, password_hash: str) -> None:
    status = await conn.execute(
        "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1", user_id, password_hash
    )
    if status.endswith(" 0"):
        raise RowNotFound(f"user {user_id}")


async def update_password_hash_if_unchanged(conn: asyncpg.Pool, user_id: int, old: str, new: str) -> None:
    """Rehash on login when parameters changed; a concurrent password change wins."""
    await conn.execute("UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2", user_id, old, new)


async def find_presence_row(conn: asyncpg.Connection | asyncpg.Pool, user_id: int) -> asyncpg.Record | None:
    """What a user's logical actor activates from: the username and the persisted ``last_seen``."""
    return await conn.fetchrow("SELECT username, last_seen FROM users WHERE id = $1", user_id)


async def update_last_seen(conn: asyncpg.Connection | asyncpg.Pool, user_id: int, last_seen: dt.datetime) -> None:
    await conn.execute("UPDATE users SET last_seen = $2 WHERE id = $1", user_id, last_seen)


async def followers_count(conn: asyncpg.Connection | asyncpg.Pool, user_id: int) -> int | None:
    """The user's follower count (None for no such user): whether their posts are fanned out or merged."""
    count = await conn.fetchval("SELECT followers_count FROM users WHERE id = $1", user_id)
    return None if count is None else int(count)


async def get_summary_row(conn: asyncpg.Connection | asyncpg.Pool, user_id: int) -> asyncpg.Record | None:
    """The columns of a UserSummary (domain/present.py ``summary``)."""
    return await conn.fetchrow("SELECT id, username, name, avatar_media_id FROM users WHERE id = $1", user_id)
