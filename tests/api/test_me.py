"""GET /me and PATCH /me, in JSON and in MessagePack: the happy story and every refusal. A refused PATCH changes
nothing at all (the users row, updated_at included, is byte-for-byte the same)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import asyncpg

from tests.support import ME_KEYS, Api, assert_error, unique, years_ago

ME = "/api/v1/me"


async def user_row(db: asyncpg.Pool, user_id: str) -> dict[str, Any]:
    row = await db.fetchrow("SELECT * FROM users WHERE id = $1", int(user_id))
    assert row is not None
    return dict(row)


async def assert_refused_and_unchanged(
    api: Api, db: asyncpg.Pool, user_id: str, body: Any, status: int, code: str
) -> dict[str, Any]:
    before = await user_row(db, user_id)
    err = assert_error(await api.patch(ME, body), status, code)
    assert await user_row(db, user_id) == before, body
    return err


async def test_me_returns_the_callers_own_account(any_api: Api, register: Any) -> None:
    user = await register(any_api, bio="hello there")
    reply = await any_api.get(ME)
    assert reply.status == 200, reply.body
    me = reply.body
    assert set(me) == ME_KEYS
    assert me == user["user"]
    assert me["username"] == user["username"] and me["email"] == user["email"] and me["bio"] == "hello there"
    assert me["followed_by_me"] is False and me["follows_me"] is False
    assert me["created_at"].endswith("Z") and me["birthday"] == "2000-01-31"


async def test_user_edits_name_bio_birthday_and_username_then_logs_in_by_the_new_username(
    any_api: Api, register: Any, db: asyncpg.Pool
) -> None:
    api = any_api
    user = await register(api)
    user_id = user["user"]["id"]
    new_username = unique("renamed")

    reply = await api.patch(
        ME,
        {
            "name": "  \u00c9milie Zola ",
            "bio": "Line one\nline two",
            "birthday": "1990-04-05",
            "username": f"  {new_username.upper()} ",
        },
    )
    assert reply.status == 200, reply.body
    me = reply.body
    assert set(me) == ME_KEYS
    assert me["name"] == "\u00c9milie Zola"
    assert me["bio"] == "Line one\nline two"
    assert me["birthday"] == "1990-04-05"
    assert me["username"] == new_username  # lower-cased and trimmed
    assert me["id"] == user_id and me["email"] == user["email"] and me["created_at"] == user["user"]["created_at"]

    assert (await api.get(ME)).body == me
    row = await user_row(db, user_id)
    assert (row["username"], row["name"], row["birthday"]) == (new_username, "\u00c9milie Zola", dt.date(1990, 4, 5))

    # One field at a time leaves the others alone.
    reply = await api.patch(ME, {"bio": ""})
    assert reply.status == 200 and reply.body == {**me, "bio": ""}

    # Changing to your own username in another case is not a conflict.
    reply = await api.patch(ME, {"username": new_username.title()})
    assert reply.status == 200 and reply.body["username"] == new_username

    api.token = None
    reply = await api.post("/api/v1/auth/login", {"login": new_username.upper(), "password": user["password"]})
    assert reply.status == 200, reply.body
    assert reply.body["user"]["id"] == user_id and reply.body["user"]["username"] == new_username
    reply = await api.post("/api/v1/auth/login", {"login": user["username"], "password": user["password"]})
    assert_error(reply, 401, "invalid_credentials")


async def test_patch_me_with_a_taken_username_in_other_case_is_409_and_changes_nothing(
    any_api: Api, make_api: Callable[..., Api], register: Any, db: asyncpg.Pool
) -> None:
    taken = (await register(make_api()))["username"]
    user = await register(any_api)
    await assert_refused_and_unchanged(
        any_api, db, user["user"]["id"], {"username": taken.upper()}, 409, "username_taken"
    )
    # A valid change sent along with the taken username is not applied either.
    await assert_refused_and_unchanged(
        any_api, db, user["user"]["id"], {"name": "Changed Name", "username": taken.title()}, 409, "username_taken"
    )
    assert (await any_api.get(ME)).body == user["user"]


async def test_patch_me_with_an_unknown_field_is_422_and_changes_nothing(
    any_api: Api, register: Any, db: asyncpg.Pool
) -> None:
    user = await register(any_api)
    for body in (
        {"email": "new@example.com"},
        {"followers_count": 1_000_000},
        {"id": "1"},
        {"password_hash": "x"},
        {"avatar_media_id": 5},
        {"name": "Sneaky", "email": "new@example.com"},
    ):
        err = await assert_refused_and_unchanged(any_api, db, user["user"]["id"], body, 422, "validation_failed")
        unknown = set(body) - {"name"}
        assert err["details"]["fields"] == dict.fromkeys(unknown, "is not a known field"), err
    assert (await any_api.get(ME)).body == user["user"]


async def test_patch_me_with_null_name_username_or_birthday_is_422(
    any_api: Api, register: Any, db: asyncpg.Pool
) -> None:
    user = await register(any_api)
    for body in ({"name": None}, {"username": None}, {"birthday": None}, {"name": None, "bio": "kept?"}):
        err = await assert_refused_and_unchanged(any_api, db, user["user"]["id"], body, 422, "validation_failed")
        assert set(err["details"]["fields"]) == set(body) - {"bio"}, err


async def test_patch_me_with_an_under_age_or_future_birthday_is_422(
    any_api: Api, register: Any, db: asyncpg.Pool
) -> None:
    user = await register(any_api)
    today = dt.datetime.now(dt.UTC).date()
    for birthday in (years_ago(12), years_ago(13) + dt.timedelta(days=1), today, today + dt.timedelta(days=30)):
        err = await assert_refused_and_unchanged(
            any_api,
            db,
            user["user"]["id"],
            {"birthday": birthday.isoformat(), "name": "Young"},
            422,
            "validation_failed",
        )
        assert set(err["details"]["fields"]) == {"birthday"}, err
    for bad in ("yesterday", "2001-13-01", 20010101):
        err = await assert_refused_and_unchanged(
            any_api, db, user["user"]["id"], {"birthday": bad}, 422, "validation_failed"
        )
        assert set(err["details"]["fields"]) == {"birthday"}, err
    # Thirteen today is fine.
    reply = await any_api.patch(ME, {"birthday": years_ago(13).isoformat()})
    assert reply.status == 200 and reply.body["birthday"] == years_ago(13).isoformat()


async def test_patch_me_with_bad_username_name_or_bio_is_422_naming_each_field(
    any_api: Api, register: Any, db: asyncpg.Pool
) -> None:
    user = await register(any_api)
    user_id = user["user"]["id"]
    cases: list[dict[str, Any]] = [
        {"username": "ab"},
        {"username": "has space"},
        {"username": "UPPER!"},
        {"username": "x" * 31},
        {"username": "dash-name"},
        {"username": ""},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 51},
        {"name": "two\nlines"},
        {"name": 42},
        {"bio": "x" * 301},
        {"bio": "bell\x07"},
    ]
    for body in cases:
        err = await assert_refused_and_unchanged(any_api, db, user_id, body, 422, "validation_failed")
        assert set(err["details"]["fields"]) == set(body), (body, err)
    err = await assert_refused_and_unchanged(
        any_api, db, user_id, {"username": "ab", "name": "", "bio": "ok"}, 422, "validation_failed"
    )
    assert set(err["details"]["fields"]) == {"username", "name"}, err


async def test_patch_me_with_an_empty_body_is_200_and_changes_nothing(
    any_api: Api, register: Any, db: asyncpg.Pool
) -> None:
    user = await register(any_api)
    before = await user_row(db, user["user"]["id"])
    reply = await any_api.patch(ME, {})
    assert reply.status == 200, reply.body
    assert reply.body == user["user"]
    assert await user_row(db, user["user"]["id"]) == before


async def test_patch_me_without_a_valid_token_is_401_and_changes_nothing(
    any_api: Api, register: Any, db: asyncpg.Pool
) -> None:
    user = await register(any_api)
    user_id = user["user"]["id"]
    token = any_api.token

    any_api.token = None
    await assert_refused_and_unchanged(any_api, db, user_id, {"name": "Intruder"}, 401, "unauthenticated")
    assert_error(await any_api.get(ME), 401, "unauthenticated")

    # A token of a session that logged out does not work either.
    any_api.token = token
    assert (await any_api.post("/api/v1/auth/logout")).status == 204
    err = await assert_refused_and_unchanged(any_api, db, user_id, {"name": "Intruder"}, 401, "unauthenticated")
    assert err["details"]["reason"] == "session_revoked", err
    assert assert_error(await any_api.get(ME), 401, "unauthenticated")["details"]["reason"] == "session_revoked"


async def test_patch_me_with_a_malformed_or_non_object_body_is_400(
    any_api: Api, register: Any, db: asyncpg.Pool
) -> None:
    user = await register(any_api)
    user_id = user["user"]["id"]
    before = await user_row(db, user_id)
    for raw in (b'{"name": "x"', b'["name"]', b"null"):
        reply = await any_api.patch(ME, raw=raw, headers={"Content-Type": "application/json"})
        assert_error(reply, 400, "malformed_body")
    reply = await any_api.patch(ME, raw=b"\xc1", headers={"Content-Type": "application/msgpack"})
    assert_error(reply, 400, "malformed_body")
    reply = await any_api.patch(ME, raw=b"name=x", headers={"Content-Type": "text/plain"})
    assert_error(reply, 415, "unsupported_media_type")
    assert await user_row(db, user_id) == before


async def test_writes_are_rate_limited_per_user_not_per_ip(make_api: Any, register: Any) -> None:
    heavy = make_api("json")
    other = make_api("json", ip=heavy.ip)  # same IP, different user
    await register(heavy)
    await register(other)
    statuses = []
    for n in range(125):
        reply = await heavy.patch("/api/v1/me", {"bio": f"edit {n}"})
        statuses.append(reply.status)
        if reply.status == 429:
            err = assert_error(reply, 429, "rate_limited")
            assert int(reply.headers["retry-after"]) >= 1
            assert err["details"]["retry_after"] >= 1
            break
    assert statuses[:120] == [200] * 120
    assert statuses[-1] == 429
    assert (await other.patch("/api/v1/me", {"bio": "still fine"})).status == 200
