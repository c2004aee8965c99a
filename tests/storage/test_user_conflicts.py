"""Only the username and email unique constraints are the client's doing (409 username_taken / email_taken);
any other unique violation on signup, such as an id minted twice, is an internal error, never a 409."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from api.accounts import signup_conflict
from storage import db
from storage import users as user_store
from storage.errors import UniqueViolation
from tests.support import unique


async def _insert(pool: asyncpg.Pool, user_id: int, username: str, email: str) -> None:
    async with db.transaction(pool) as conn:
        await user_store.insert_user(
            conn,
            user_id=user_id,
            username=username,
            email=email,
            name="Clash",
            bio="",
            birthday=dt.date(2000, 1, 31),
            password_hash="x",
        )


async def _violation(pool: asyncpg.Pool, user_id: int, username: str, email: str) -> UniqueViolation:
    with pytest.raises(UniqueViolation) as caught:
        await _insert(pool, user_id, username, email)
    return caught.value


async def test_each_users_unique_constraint_maps_to_its_own_outcome(db: asyncpg.Pool) -> None:
    taken = unique("clash")
    user_id = int(await db.fetchval("SELECT coalesce(max(id), 0) + 1000 FROM users"))
    await _insert(db, user_id, taken, f"{taken}@example.com")
    other = unique("other")

    same_username = await _violation(db, user_id + 1, taken, f"{other}@example.com")
    same_email = await _violation(db, user_id + 2, other, f"{taken}@example.com")
    same_id = await _violation(db, user_id, other, f"{other}@example.com")

    assert (same_username.constraint, same_email.constraint, same_id.constraint) == (
        user_store.USERNAME_UNIQUE,
        user_store.EMAIL_UNIQUE,
        "users_pkey",
    )
    username_conflict, email_conflict = signup_conflict(same_username), signup_conflict(same_email)
    assert username_conflict is not None and username_conflict.code == "username_taken"
    assert email_conflict is not None and email_conflict.code == "email_taken"
    assert username_conflict.http_status == email_conflict.http_status == 409
    assert signup_conflict(same_id) is None, "a primary-key clash is not the client's doing"
    assert signup_conflict(UniqueViolation("sessions_pkey")) is None
