"""Every error path of /auth, told as short stories. Each error asserts the exact status and ``error.code`` and
that nothing was half-written: no users row, no session, the flow not consumed (checked in the database)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import time
import warnings
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import jwt
import msgpack
import orjson
import pytest

from domain.tokens import JWT_SIGNING, derive_key
from tests.conftest import TEST_JWT_SECRET
from tests.support import Api, Mailbox, Reply, assert_error, fresh_ip, unique, years_ago

AUTH = "/api/v1/auth"
GOOD_PASSWORD = "Sturdy-Pass-42"
MISSING = object()

# ---------------------------------------------------------------- helpers


def other_code(code: str) -> str:
    """A well-formed code that is certainly not ``code``."""
    return f"{(int(code) + 1) % 1_000_000:06d}"


def new_email(prefix: str = "new") -> str:
    return f"{unique(prefix)}@example.com"


async def start_signup(api: Api, mailbox: Mailbox, email: str | None = None) -> tuple[str, str, str]:
    """POST /auth/signup and read the mailed code: (email, flow_id, code)."""
    email = email or new_email()
    reply = await api.post(f"{AUTH}/signup", {"email": email})
    assert reply.status == 202, reply.body
    return email, reply.body["flow_id"], await mailbox.code(email)


async def verified_signup(api: Api, mailbox: Mailbox, email: str | None = None) -> tuple[str, str]:
    email, flow_id, code = await start_signup(api, mailbox, email)
    reply = await api.post(f"{AUTH}/signup/verify", {"flow_id": flow_id, "code": code})
    assert reply.status == 200, reply.body
    return email, flow_id


def complete_body(flow_id: str, username: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "flow_id": flow_id,
        "username": username,
        "name": "Test Person",
        "password": GOOD_PASSWORD,
        "birthday": "1995-05-17",
    }
    body.update(over)
    return {k: v for k, v in body.items() if v is not MISSING}


async def flow_row(db: asyncpg.Pool, flow_id: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM auth_flows WHERE id = $1", int(flow_id))
    assert row is not None
    return row


async def users_count(db: asyncpg.Pool, *, email: str | None = None, username: str | None = None) -> int:
    if email is not None:
        return int(await db.fetchval("SELECT count(*) FROM users WHERE email = $1", email.lower()))
    return int(await db.fetchval("SELECT count(*) FROM users WHERE username = $1", str(username).lower()))


async def flows_count(db: asyncpg.Pool, email: str) -> int:
    return int(await db.fetchval("SELECT count(*) FROM auth_flows WHERE email = $1", email.lower()))


async def assert_flow_untouched(db: asyncpg.Pool, flow_id: str, *, verified: bool) -> None:
    """The flow is still usable: not consumed, not burned, and verified only if it was before."""
    row = await flow_row(db, flow_id)
    assert row["consumed_at"] is None and row["burned_at"] is None, dict(row)
    assert (row["verified_at"] is not None) == verified, dict(row)


async def sessions(db: asyncpg.Pool, user_id: str) -> list[asyncpg.Record]:
    return list(await db.fetch("SELECT * FROM sessions WHERE user_id = $1 ORDER BY id", int(user_id)))


async def expire_flow(db: asyncpg.Pool, flow_id: str) -> None:
    """Simulate the 15 minutes passing."""
    await db.execute("UPDATE auth_flows SET expires_at = now() - interval '1 second' WHERE id = $1", int(flow_id))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def mint(claims: dict[str, Any], secret: str = TEST_JWT_SECRET, algorithm: str = "HS256") -> str:
    """A token signed as the server signs: with the key HKDF derives from ``secret`` for JWTs."""
    return jwt.encode(claims, derive_key(secret, JWT_SIGNING), algorithm=algorithm)


async def me_status(api: Api, access_token: str) -> Reply:
    return await api.get("/api/v1/me", headers={"Authorization": f"Bearer {access_token}"})


def assert_unauthenticated(reply: Reply, reason: str | None = None) -> dict[str, Any]:
    """A 401 ``unauthenticated`` (API.md 1); ``reason`` is the expected ``details.reason``."""
    err = assert_error(reply, 401, "unauthenticated")
    if reason is not None:
        assert err["details"].get("reason") == reason, err
    return err


# ---------------------------------------------------------------- signup: duplicates


async def test_signup_with_a_taken_email_in_any_case_answers_like_a_new_one_and_can_never_complete(
    make_api: Callable[..., Api], register: Any, mailbox: Mailbox, db: asyncpg.Pool
) -> None:
    owner = await register(make_api())
    email = owner["email"]
    fresh = make_api()
    new_reply = await fresh.post(f"{AUTH}/signup", {"email": new_email("fresh")})
    assert new_reply.status == 202, new_reply.body

    stranger = make_api()
    flows = []
    for variant in (email.upper(), email.title(), f"  {email}  "):
        reply = await stranger.post(f"{AUTH}/signup", {"email": variant})
        assert reply.status == 202, reply.body  # the same answer as for an address nobody has
        assert set(reply.body) == set(new_reply.body) == {"flow_id", "expires_at"}
        flows.append(reply.body["flow_id"])

    # The owner gets one notice per attempt, none with a code.
    notices = (await mailbox.wait_count(email, 4))[1:]
    assert len(notices) == 3
    for notice in notices:
        assert "tried to sign up" in notice["Subject"], notice["Subject"]
        assert not mailbox.CODE.search(str(notice.get_payload())) and not mailbox.CODE.search(notice["Subject"])

    # No code completes such a flow: every guess is a plain wrong code, and the fifth burns it.
    for left in (4, 3, 2, 1, 0):
        reply = await stranger.post(f"{AUTH}/signup/verify", {"flow_id": flows[0], "code": f"{left:06d}"})
        assert assert_error(reply, 422, "invalid_code")["details"]["attempts_left"] == left
    assert_error(await stranger.post(f"{AUTH}/signup/verify", {"flow_id": flows[0], "code": "000000"}), 410)
    reply = await stranger.post(f"{AUTH}/signup/complete", complete_body(flows[1], unique("thief")))
    assert_error(reply, 409, "flow_not_verified")
    assert await users_count(db, email=email) == 1
    assert await flows_count(db, email) == 4
    assert [(await flow_row(db, f))["verified_at"] for f in flows] == [None, None, None]


async def test_signup_with_an_invalid_email_is_422_and_starts_nothing(api: Api, db: asyncpg.Pool) -> None:
    for bad in ("not-an-email", "a@", "@example.com", "two words@example.com"):
        err = assert_error(await api.post(f"{AUTH}/signup", {"email": bad}), 422, "validation_failed")
        assert set(err["details"]["fields"]) == {"email"}, err
        assert await flows_count(db, bad.strip()) == 0


async def test_signup_complete_with_taken_username_in_other_case_is_409_and_the_flow_stays_usable(
    make_api: Callable[..., Api], register: Any, mailbox: Mailbox, db: asyncpg.Pool
) -> None:
    taken = (await register(make_api()))["username"]
    api = make_api()
    email, flow_id = await verified_signup(api, mailbox)

    reply = await api.post(f"{AUTH}/signup/complete", complete_body(flow_id, taken.upper()))
    assert_error(reply, 409, "username_taken")
    assert await users_count(db, email=email) == 0
    assert await users_count(db, username=taken) == 1
    await assert_flow_untouched(db, flow_id, verified=True)

    # The same flow then completes with another username.
    fresh = unique("second")
    reply = await api.post(f"{AUTH}/signup/complete", complete_body(flow_id, fresh))
    assert reply.status == 201, reply.body
    assert reply.body["user"]["username"] == fresh and reply.body["user"]["email"] == email
    assert await users_count(db, email=email) == 1
    assert (await flow_row(db, flow_id))["consumed_at"] is not None
    assert len(await sessions(db, reply.body["user"]["id"])) == 1


# ---------------------------------------------------------------- codes and flows


async def test_each_wrong_code_counts_down_and_the_fifth_burns_the_flow(
    api: Api, mailbox: Mailbox, db: asyncpg.Pool
) -> None:
    email, flow_id, code = await start_signup(api, mailbox)
    wrong = other_code(code)

    for left in (4, 3, 2, 1, 0):
        reply = await api.post(f"{AUTH}/signup/verify", {"flow_id": flow_id, "code": wrong})
        err = assert_error(reply, 422, "invalid_code")
        assert err["details"]["attempts_left"] == left, err
        assert (await flow_row(db, flow_id))["attempts"] == 5 - left

    row = await flow_row(db, flow_id)
    assert row["burned_at"] is not None and row["verified_at"] is None

    # Burned: even the right code is refused, and nothing can complete.
    assert_error(await api.post(f"{AUTH}/signup/verify", {"flow_id": flow_id, "code": code}), 410, "flow_expired")
    reply = await api.post(f"{AUTH}/signup/complete", complete_body(flow_id, unique("burnt")))
    assert_error(reply, 410, "flow_expired")
    row = await flow_row(db, flow_id)
    assert row["verified_at"] is None and row["consumed_at"] is None and row["attempts"] == 5
    assert await users_count(db, email=email) == 0


async def test_malformed_codes_count_as_wrong_attempts(api: Api, mailbox: Mailbox, db: asyncpg.Pool) -> None:
    _, flow_id, code = await start_signup(api, mailbox)
    for left, bad in zip((4, 3, 2), ("12345", "abcdef", code + "0"), strict=True):
        err = assert_error(
            await api.post(f"{AUTH}/signup/verify", {"flow_id": flow_id, "code": bad}), 422, "invalid_code"
        )
        assert err["details"]["attempts_left"] == left
    assert (await flow_row(db, flow_id))["attempts"] == 3
    # Tries remain, so the right code still works.
    assert (await api.post(f"{AUTH}/signup/verify", {"flow_id": flow_id, "code": code})).status == 200


async def test_concurrent_wrong_codes_are_each_counted_exactly_once(
    api: Api, mailbox: Mailbox, db: asyncpg.Pool
) -> None:
    _, flow_id, code = await start_signup(api, mailbox)
    wrong = other_code(code)
    replies = await asyncio.gather(
        *(api.post(f"{AUTH}/signup/verify", {"flow_id": flow_id, "code": wrong}) for _ in range(7))
    )
    left = sorted(assert_error(r, 422, "invalid_code")["details"]["attempts_left"] for r in replies if r.status == 422)
    assert left == [0, 1, 2, 3, 4], [(r.status, r.body) for r in replies]
    for r in replies:
        if r.status != 422:
            assert_error(r, 410, "flow_expired")
    row = await flow_row(db, flow_id)
    assert row["attempts"] == 5 and row["burned_at"] is not None and row["verified_at"] is None


async def test_verifying_an_expired_flow_is_410_even_with_the_right_code(
    api: Api, mailbox: Mailbox, db: asyncpg.Pool
) -> None:
    _, flow_id, code = await start_signup(api, mailbox)
    await expire_flow(db, flow_id)
    assert_error(await api.post(f"{AUTH}/signup/verify", {"flow_id": flow_id, "code": code}), 410, "flow_expired")
    row = await flow_row(db, flow_id)
    assert row["verified_at"] is None and row["attempts"] == 0


async def test_completing_a_verified_flow_after_it_expired_is_410(api: Api, mailbox: Mailbox, db: asyncpg.Pool) -> None:
    email, flow_id = await verified_signup(api, mailbox)
    await expire_flow(db, flow_id)
    reply = await api.post(f"{AUTH}/signup/complete", complete_body(flow_id, unique("late")))
    assert_error(reply, 410, "flow_expired")
    assert await users_count(db, email=email) == 0
    assert (await flow_row(db, flow_id))["consumed_at"] is None


@pytest.mark.parametrize(
    "flow_id",
    ["1", "384000000000000000", "abc", "", "-5", "12.5", " 123", "0x1f", "9" * 19, "9" * 40, "\u00b2", "\u0661\u0662"],
    ids=[
        "one",
        "unknown",
        "letters",
        "empty",
        "negative",
        "decimal",
        "space",
        "hex",
        "over_int64",
        "very_long",
        "superscript_two",
        "arabic_digits",
    ],
)
async def test_verify_with_an_unknown_or_non_numeric_flow_id_is_404(api: Api, flow_id: str) -> None:
    for path in ("signup/verify", "password-reset/verify"):
        reply = await api.post(f"{AUTH}/{path}", {"flow_id": flow_id, "code": "123456"})
        if len(flow_id) > 32:  # over the schema's max length: a field error rather than a lookup
            assert_error(reply, 422, "validation_failed")
        else:
            assert_error(reply, 404, "not_found")
    for path, body in (
        ("signup/complete", complete_body(flow_id, unique("nobody"))),
        ("password-reset/complete", {"flow_id": flow_id, "new_password": GOOD_PASSWORD}),
    ):
        reply = await api.post(f"{AUTH}/{path}", body)
        if len(flow_id) > 32:
            assert_error(reply, 422, "validation_failed")
        else:
            assert_error(reply, 404, "not_found")


async def test_a_signup_flow_id_used_at_password_reset_is_404_and_leaves_the_flow_alone(
    api: Api, mailbox: Mailbox, db: asyncpg.Pool
) -> None:
    email, flow_id, code = await start_signup(api, mailbox)
    assert_error(await api.post(f"{AUTH}/password-reset/verify", {"flow_id": flow_id, "code": code}), 404, "not_found")
    assert_error(
        await api.post(f"{AUTH}/password-reset/complete", {"flow_id": flow_id, "new_password": GOOD_PASSWORD}),
        404,
        "not_found",
    )
    await assert_flow_untouched(db, flow_id, verified=False)
    assert (await flow_row(db, flow_id))["attempts"] == 0
    # The signup itself still works.
    assert (await api.post(f"{AUTH}/signup/verify", {"flow_id": flow_id, "code": code})).status == 200
    assert await users_count(db, email=email) == 0


async def test_a_password_reset_flow_id_used_at_signup_is_404(
    make_api: Callable[..., Api], register: Any, mailbox: Mailbox, db: asyncpg.Pool
) -> None:
    api = make_api()
    user = await register(api)
    reply = await api.post(f"{AUTH}/password-reset", {"email": user["email"]})
    assert reply.status == 202, reply.body
    flow_id = reply.body["flow_id"]
    code = await mailbox.code(user["email"], nth=2)
    assert_error(await api.post(f"{AUTH}/signup/verify", {"flow_id": flow_id, "code": code}), 404, "not_found")
    assert_error(await api.post(f"{AUTH}/signup/complete", complete_body(flow_id, unique("hijack"))), 404, "not_found")
    await assert_flow_untouched(db, flow_id, verified=False)
    assert await users_count(db, email=user["email"]) == 1


# ---------------------------------------------------------------- out-of-order steps


async def test_signup_complete_before_verify_is_409_flow_not_verified(
    api: Api, mailbox: Mailbox, db: asyncpg.Pool
) -> None:
    email, flow_id, _ = await start_signup(api, mailbox)
    username = unique("eager")
    reply = await api.post(f"{AUTH}/signup/complete", complete_body(flow_id, username))
    assert_error(reply, 409, "flow_not_verified")
    assert await users_count(db, email=email) == 0
    assert await users_count(db, username=username) == 0
    await assert_flow_untouched(db, flow_id, verified=False)


async def test_completing_a_signup_twice_is_410_the_second_time(api: Api, mailbox: Mailbox, db: asyncpg.Pool) -> None:
    email, flow_id = await verified_signup(api, mailbox)
    first = await api.post(f"{AUTH}/signup/complete", complete_body(flow_id, unique("once")))
    assert first.status == 201, first.body
    second_name = unique("twice")
    assert_error(await api.post(f"{AUTH}/signup/complete", complete_body(flow_id, second_name)), 410, "flow_expired")
    assert await users_count(db, email=email) == 1
    assert await users_count(db, username=second_name) == 0
    assert len(await sessions(db, first.body["user"]["id"])) == 1


async def test_completing_a_signup_twice_at_once_creates_one_account(
    api: Api, mailbox: Mailbox, db: asyncpg.Pool
) -> None:
    email, flow_id = await verified_signup(api, mailbox)
    names = [unique("race"), unique("race")]
    replies = await asyncio.gather(*(api.post(f"{AUTH}/signup/complete", complete_body(flow_id, n)) for n in names))
    statuses = sorted(r.status for r in replies)
    assert statuses == [201, 410], [(r.status, r.body) for r in replies]
    loser = next(r for r in replies if r.status != 201)
    assert_error(loser, 410, "flow_expired")
    assert await users_count(db, email=email) == 1
    assert sum([await users_count(db, username=n) for n in names]) == 1


async def test_password_reset_complete_before_verify_is_409_and_changes_nothing(
    make_api: Callable[..., Api], register: Any, db: asyncpg.Pool
) -> None:
    api = make_api()
    user = await register(api)
    user_id = user["user"]["id"]
    hash_before = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", int(user_id))
    reply = await api.post(f"{AUTH}/password-reset", {"email": user["email"]})
    assert reply.status == 202, reply.body
    flow_id = reply.body["flow_id"]

    reply = await api.post(f"{AUTH}/password-reset/complete", {"flow_id": flow_id, "new_password": "Brand-New-77"})
    assert_error(reply, 409, "flow_not_verified")
    assert await db.fetchval("SELECT password_hash FROM users WHERE id = $1", int(user_id)) == hash_before
    assert all(s["revoked_at"] is None for s in await sessions(db, user_id))
    await assert_flow_untouched(db, flow_id, verified=False)
    assert (await api.get("/api/v1/me")).status == 200


async def test_password_reset_complete_with_a_weak_password_is_422_and_changes_nothing(
    api: Api, mailbox: Mailbox, db: asyncpg.Pool
) -> None:
    # An account whose username is not its email's local part, so each rule is tested on its own.
    username = unique("resetter")
    email = new_email("inbox")
    _, signup_flow = await verified_signup(api, mailbox, email)
    reply = await api.post(f"{AUTH}/signup/complete", complete_body(signup_flow, username))
    assert reply.status == 201, reply.body
    user_id = reply.body["user"]["id"]
    api.token = reply.body["tokens"]["access_token"]

    hash_before = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", int(user_id))
    reply = await api.post(f"{AUTH}/password-reset", {"email": email})
    flow_id = reply.body["flow_id"]
    code = await mailbox.code(email, nth=2)
    assert (await api.post(f"{AUTH}/password-reset/verify", {"flow_id": flow_id, "code": code})).status == 200

    cases = {
        "short1!": "at least 8 characters",
        "password123": "too common",
        "aaaaaaaaaa": "too simple",
        f"x{email.split('@')[0].upper()}!9": "username or email",
        f"x{username.upper()}!9": "username or email",  # same rule as at signup
    }
    for weak, reason in cases.items():
        reply = await api.post(f"{AUTH}/password-reset/complete", {"flow_id": flow_id, "new_password": weak})
        err = assert_error(reply, 422, "validation_failed")
        assert set(err["details"]["fields"]) == {"new_password"}, (weak, err)
        assert reason in err["details"]["fields"]["new_password"], (weak, err)

    assert await db.fetchval("SELECT password_hash FROM users WHERE id = $1", int(user_id)) == hash_before
    assert all(s["revoked_at"] is None for s in await sessions(db, user_id))
    assert (await api.get("/api/v1/me")).status == 200
    await assert_flow_untouched(db, flow_id, verified=True)
    # A good password then completes the same flow; a second completion is 410.
    ok = await api.post(f"{AUTH}/password-reset/complete", {"flow_id": flow_id, "new_password": "Brand-New-77"})
    assert ok.status == 200, ok.body
    reply = await api.post(f"{AUTH}/password-reset/complete", {"flow_id": flow_id, "new_password": "Other-New-88"})
    assert_error(reply, 410, "flow_expired")


# ---------------------------------------------------------------- field validation at signup/complete


async def test_signup_complete_with_weak_passwords_is_422_naming_password(
    api: Api, mailbox: Mailbox, db: asyncpg.Pool
) -> None:
    email, flow_id = await verified_signup(api, mailbox)
    username = unique("weakling")
    cases = {
        "Ab1!x": "at least 8 characters",
        "password123": "too common",
        "PassWord123": "too common",
        "aaaaaaaaaa": "too simple",
        f"My{username.upper()}!9": "username",
        "x" * 129: "at most 128",
    }
    for weak, reason in cases.items():
        reply = await api.post(f"{AUTH}/signup/complete", complete_body(flow_id, username, password=weak))
        err = assert_error(reply, 422, "validation_failed")
        assert set(err["details"]["fields"]) == {"password"}, (weak, err)
        assert reason in err["details"]["fields"]["password"], (weak, err)
    assert await users_count(db, email=email) == 0
    assert await users_count(db, username=username) == 0
    await assert_flow_untouched(db, flow_id, verified=True)


async def test_signup_complete_with_bad_birthdays_and_usernames_is_422_then_works_at_exactly_13(
    api: Api, mailbox: Mailbox, db: asyncpg.Pool
) -> None:
    email, flow_id = await verified_signup(api, mailbox)
    username = unique("kid")
    today = dt.datetime.now(dt.UTC).date()
    birthdays = {
        years_ago(12).isoformat(): "at least 13",
        (years_ago(13) + dt.timedelta(days=1)).isoformat(): "at least 13",  # 13 tomorrow
        (today + dt.timedelta(days=1)).isoformat(): "future",
        "1850-01-01": "plausible",
        "31/01/2000": "",
        "2001-02-30": "",
    }
    for birthday, reason in birthdays.items():
        reply = await api.post(f"{AUTH}/signup/complete", complete_body(flow_id, username, birthday=birthday))
        err = assert_error(reply, 422, "validation_failed")
        assert set(err["details"]["fields"]) == {"birthday"}, (birthday, err)
        assert reason in err["details"]["fields"]["birthday"], (birthday, err)

    for bad in ("ab", "has space", "UPPER!", "dash-name", "x" * 31, "emoji\U0001f642", "", "x" * 101):
        reply = await api.post(f"{AUTH}/signup/complete", complete_body(flow_id, bad))
        err = assert_error(reply, 422, "validation_failed")
        assert set(err["details"]["fields"]) == {"username"}, (bad, err)

    # Several bad fields at once are all named.
    reply = await api.post(
        f"{AUTH}/signup/complete", complete_body(flow_id, "ab", name="  ", birthday=today.isoformat())
    )
    err = assert_error(reply, 422, "validation_failed")
    assert set(err["details"]["fields"]) == {"username", "name", "birthday"}, err

    assert await users_count(db, email=email) == 0
    await assert_flow_untouched(db, flow_id, verified=True)

    # Exactly 13 today is old enough; the username is stored lower-case.
    reply = await api.post(
        f"{AUTH}/signup/complete", complete_body(flow_id, username.upper(), birthday=years_ago(13).isoformat())
    )
    assert reply.status == 201, reply.body
    assert reply.body["user"]["username"] == username and reply.body["user"]["birthday"] == years_ago(13).isoformat()


async def test_signup_complete_with_a_missing_or_unknown_field_is_422_naming_it(
    api: Api, mailbox: Mailbox, db: asyncpg.Pool
) -> None:
    email, flow_id = await verified_signup(api, mailbox)
    username = unique("fields")
    for missing in ("flow_id", "username", "name", "password", "birthday"):
        body = complete_body(flow_id, username)
        del body[missing]
        reply = await api.post(f"{AUTH}/signup/complete", body)
        err = assert_error(reply, 422, "validation_failed")
        assert err["details"]["fields"] == {missing: "is required"}, err

    for extra in ({"role": "admin"}, {"followers_count": 1_000_000}, {"id": "1"}, {"email": "other@example.com"}):
        reply = await api.post(f"{AUTH}/signup/complete", complete_body(flow_id, username, **extra))
        err = assert_error(reply, 422, "validation_failed")
        assert set(err["details"]["fields"]) == set(extra), err

    for wrong_type in ({"name": 5}, {"password": ["a"]}, {"bio": {"x": 1}}):
        reply = await api.post(f"{AUTH}/signup/complete", complete_body(flow_id, username, **wrong_type))
        err = assert_error(reply, 422, "validation_failed")
        assert set(err["details"]["fields"]) == set(wrong_type), err

    assert_error(await api.post(f"{AUTH}/signup", {}), 422, "validation_failed")
    assert await users_count(db, email=email) == 0
    assert await users_count(db, username=username) == 0
    await assert_flow_untouched(db, flow_id, verified=True)


# ---------------------------------------------------------------- body errors


async def test_malformed_json_body_is_400_malformed_body(api: Api, db: asyncpg.Pool) -> None:
    email = new_email("broken")
    for raw in (f'{{"email": "{email}"'.encode(), b"{'email': 1}", b"\xff\xfe", f'{{"email": "{email}",}}'.encode()):
        reply = await api.post(f"{AUTH}/signup", raw=raw, headers={"Content-Type": "application/json"})
        assert_error(reply, 400, "malformed_body")
    assert await flows_count(db, email) == 0


async def test_json_that_is_not_an_object_is_400_malformed_body(api: Api) -> None:
    for raw in (b"[]", b'["a@example.com"]', b'"a@example.com"', b"42", b"null", b"true"):
        reply = await api.post(f"{AUTH}/login", raw=raw, headers={"Content-Type": "application/json"})
        err = assert_error(reply, 400, "malformed_body")
        assert err["details"] == {}


async def test_a_body_without_content_type_is_read_as_json(api: Api) -> None:
    # API.md: "JSON by default". A JSON object sent with no Content-Type is not "not an object".
    raw = orjson.dumps({"login": unique("nobody"), "password": "Wrong-pass-1"})
    response = await api.http.post(f"{AUTH}/login", content=raw, headers=api.headers())
    assert "content-type" not in response.request.headers
    assert_error(Reply(response.status_code, api.decode(response), response.headers), 401, "invalid_credentials")


async def test_an_empty_json_body_is_422_body_is_required(api: Api) -> None:
    reply = await api.post(f"{AUTH}/login", raw=b"", headers={"Content-Type": "application/json"})
    err = assert_error(reply, 422, "validation_failed")
    assert err["details"]["fields"] == {"body": "is required"}


@pytest.mark.parametrize("content_type", ["application/msgpack", "application/vnd.msgpack", "application/x-msgpack"])
async def test_malformed_msgpack_body_is_400_and_the_error_comes_back_in_msgpack(
    make_api: Callable[..., Api], db: asyncpg.Pool, content_type: str
) -> None:
    api = make_api("msgpack")
    email = new_email("packed")
    packed = msgpack.packb({"email": email})
    for raw in (
        b"\xc1",  # a byte MessagePack never uses
        packed[:-3],  # truncated
        packed + b"\x00",  # trailing extra data
        msgpack.packb({"email": b"\x00\x01"}, use_bin_type=True),  # bytes have no JSON form
        msgpack.packb({1: email}),  # a non-string map key
    ):
        reply = await api.post(f"{AUTH}/signup", raw=raw, headers={"Content-Type": content_type})
        assert reply.headers["content-type"].startswith("application/msgpack")
        assert_error(reply, 400, "malformed_body")
    # A MessagePack array or scalar is not an object either.
    for value in ([email], email, 7, None):
        reply = await api.post(f"{AUTH}/signup", raw=msgpack.packb(value), headers={"Content-Type": content_type})
        assert_error(reply, 400, "malformed_body")
    assert await flows_count(db, email) == 0


async def test_msgpack_validation_errors_come_back_in_msgpack(make_api: Callable[..., Api], db: asyncpg.Pool) -> None:
    api = make_api("msgpack")
    reply = await api.post(f"{AUTH}/signup", {"email": new_email(), "role": "admin"})
    assert reply.headers["content-type"].startswith("application/msgpack")
    err = assert_error(reply, 422, "validation_failed")
    assert err["details"]["fields"] == {"role": "is not a known field"}
    reply = await api.post(f"{AUTH}/login", {"login": "x"})
    err = assert_error(reply, 422, "validation_failed")
    assert err["details"]["fields"] == {"password": "is required"}


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_a_text_plain_body_is_415(make_api: Callable[..., Api], db: asyncpg.Pool, fmt: str) -> None:
    api = make_api(fmt)
    email = new_email("plain")
    for ctype in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
    ):
        reply = await api.post(f"{AUTH}/signup", raw=orjson.dumps({"email": email}), headers={"Content-Type": ctype})
        assert_error(reply, 415, "unsupported_media_type")
    assert await flows_count(db, email) == 0


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_a_body_over_64_kib_is_413_payload_too_large(
    make_api: Callable[..., Api], db: asyncpg.Pool, fmt: str
) -> None:
    api = make_api(fmt)
    email = new_email("huge")
    body = {"email": email, "padding": "x" * 70_000}
    raw = msgpack.packb(body) if fmt == "msgpack" else orjson.dumps(body)
    ctype = "application/msgpack" if fmt == "msgpack" else "application/json"
    reply = await api.post(f"{AUTH}/signup", raw=raw, headers={"Content-Type": ctype})
    err = assert_error(reply, 413, "payload_too_large")
    assert err["details"]["max_bytes"] == 65536

    # Without a Content-Length (chunked), the limit holds as the bytes arrive.
    async def chunks() -> Any:
        for i in range(0, len(raw), 8192):
            yield raw[i : i + 8192]

    response = await api.http.post(f"{AUTH}/signup", content=chunks(), headers={**api.headers(), "Content-Type": ctype})
    assert "content-length" not in response.request.headers
    assert_error(Reply(response.status_code, api.decode(response), response.headers), 413, "payload_too_large")
    assert await flows_count(db, email) == 0


async def test_a_body_of_exactly_64_kib_is_accepted(api: Api) -> None:
    raw = orjson.dumps({"login": unique("nobody"), "password": "Wrong-pass-1"})
    raw = raw[:-1] + b" " * (65536 - len(raw)) + b"}"
    assert len(raw) == 65536
    reply = await api.post(f"{AUTH}/login", raw=raw, headers={"Content-Type": "application/json"})
    assert_error(reply, 401, "invalid_credentials")


# ---------------------------------------------------------------- tokens


async def test_me_without_a_token_is_401_unauthenticated(api: Api) -> None:
    reply = await api.get("/api/v1/me")
    assert_error(reply, 401, "unauthenticated")


async def test_non_bearer_authorization_is_401(make_api: Callable[..., Api], register: Any) -> None:
    api = make_api()
    user = await register(api)
    token = user["tokens"]["access_token"]
    api.token = None
    for header in (
        "Basic " + base64.b64encode(b"alice:secret").decode(),
        f"Token {token}",
        token,
        "Bearer",
        "Bearer not.a.jwt",
        f"Bearer {user['tokens']['refresh_token']}",
    ):
        reply = await api.get("/api/v1/me", headers={"Authorization": header})
        err = assert_unauthenticated(reply)
        assert err["details"].get("reason") in (None, "invalid_token"), (header, err)


async def test_an_expired_access_token_is_401_token_expired(make_api: Callable[..., Api], register: Any) -> None:
    api = make_api()
    user = await register(api)
    claims = claims_of(user["tokens"]["access_token"])
    assert set(claims) == {"iss", "sub", "sid", "jti", "typ", "iat", "exp"}
    now = int(time.time())

    # Control: the same claims, minted by us and still valid, are accepted.
    assert (await me_status(api, mint({**claims, "iat": now, "exp": now + 60}))).status == 200

    expired = mint({**claims, "iat": now - 1000, "exp": now - 60})
    assert_unauthenticated(await me_status(api, expired), "token_expired")


async def test_a_token_with_a_tampered_payload_is_401_invalid_token(
    make_api: Callable[..., Api], register: Any
) -> None:
    api = make_api()
    mallory = await register(api)
    victim = await register(make_api())
    header, payload, signature = mallory["tokens"]["access_token"].split(".")
    claims = orjson.loads(unb64url(payload))
    claims["sub"] = victim["user"]["id"]
    forged = ".".join([header, b64url(orjson.dumps(claims)), signature])
    assert_unauthenticated(await me_status(api, forged), "invalid_token")
    # Tampering with the signature alone is refused too.
    flipped = signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")
    assert_unauthenticated(await me_status(api, ".".join([header, payload, flipped])), "invalid_token")


async def test_an_alg_none_token_is_401_invalid_token(make_api: Callable[..., Api], register: Any) -> None:
    api = make_api()
    user = await register(api)
    claims = claims_of(user["tokens"]["access_token"])
    for alg in ("none", "None", "NONE"):
        head = b64url(orjson.dumps({"alg": alg, "typ": "JWT"}))
        body = b64url(orjson.dumps(claims))
        for token in (f"{head}.{body}.", f"{head}.{body}"):
            assert_unauthenticated(await me_status(api, token), "invalid_token")


async def test_a_token_signed_with_another_secret_or_algorithm_is_401_invalid_token(
    make_api: Callable[..., Api], register: Any
) -> None:
    api = make_api()
    user = await register(api)
    claims = claims_of(user["tokens"]["access_token"])
    assert_unauthenticated(await me_status(api, mint(claims, secret="another-secret-" + "y" * 40)), "invalid_token")
    # JWT_SECRET itself is no signing key: only the key derived from it for JWTs is.
    raw_secret = jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")
    assert_unauthenticated(await me_status(api, raw_secret), "invalid_token")
    # The right secret with an algorithm outside the allow-list.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns that the key is short for HS512; that is not the point here
        hs512 = mint(claims, algorithm="HS512")
    assert_unauthenticated(await me_status(api, hs512), "invalid_token")
    # The right secret and algorithm, but not an access token or missing claims.
    assert_unauthenticated(await me_status(api, mint({**claims, "typ": "refresh"})), "invalid_token")
    assert_unauthenticated(await me_status(api, mint({**claims, "iss": "someone-else"})), "invalid_token")
    for claim in ("sid", "sub", "exp", "jti"):
        trimmed = {k: v for k, v in claims.items() if k != claim}
        assert_unauthenticated(await me_status(api, mint(trimmed)), "invalid_token")
    assert_unauthenticated(await me_status(api, mint({**claims, "sub": "not-a-number"})), "invalid_token")


async def test_a_refresh_token_used_twice_is_401_refresh_reused_and_kills_the_session(
    make_api: Callable[..., Api], register: Any, db: asyncpg.Pool
) -> None:
    api = make_api()
    user = await register(api)
    first = user["tokens"]
    # A second, independent session (another device) must survive.
    other = await api.post(f"{AUTH}/login", {"login": user["username"], "password": user["password"]})
    assert other.status == 200, other.body

    rotated = await api.post(f"{AUTH}/refresh", {"refresh_token": first["refresh_token"]})
    assert rotated.status == 200, rotated.body
    newest = rotated.body["tokens"]
    assert newest["refresh_token"] != first["refresh_token"]
    assert (await me_status(api, newest["access_token"])).status == 200

    reply = await api.post(f"{AUTH}/refresh", {"refresh_token": first["refresh_token"]})
    assert_unauthenticated(reply, "refresh_reused")

    # The whole session is dead: both of its access tokens and its newest refresh token.
    assert_unauthenticated(await me_status(api, newest["access_token"]), "session_revoked")
    assert_unauthenticated(await me_status(api, first["access_token"]), "session_revoked")
    assert_unauthenticated(
        await api.post(f"{AUTH}/refresh", {"refresh_token": newest["refresh_token"]}), "session_revoked"
    )
    rows = await sessions(db, user["user"]["id"])
    assert len(rows) == 2
    dead = [r for r in rows if r["revoked_at"] is not None]
    assert len(dead) == 1 and dead[0]["revoked_reason"] == "refresh_reuse"
    # The other device is unaffected.
    assert (await me_status(api, other.body["tokens"]["access_token"])).status == 200


async def test_an_unknown_refresh_token_is_401(api: Api) -> None:
    for token in ("made-up-token", "", "x" * 512):
        assert_unauthenticated(await api.post(f"{AUTH}/refresh", {"refresh_token": token}), "invalid_refresh_token")
    assert_error(await api.post(f"{AUTH}/refresh", {"refresh_token": "x" * 513}), 422, "validation_failed")


async def test_logging_out_twice_with_the_same_token_is_401_the_second_time(
    make_api: Callable[..., Api], register: Any, db: asyncpg.Pool
) -> None:
    api = make_api()
    user = await register(api)
    assert (await api.post(f"{AUTH}/logout")).status == 204
    assert_unauthenticated(await api.post(f"{AUTH}/logout"), "session_revoked")
    assert_unauthenticated(
        await api.post(f"{AUTH}/refresh", {"refresh_token": user["tokens"]["refresh_token"]}), "session_revoked"
    )
    rows = await sessions(db, user["user"]["id"])
    assert len(rows) == 1 and rows[0]["revoked_reason"] == "logout"
    api.token = None
    assert_error(await api.post(f"{AUTH}/logout"), 401, "unauthenticated")


# ---------------------------------------------------------------- password reset


async def test_password_reset_for_an_unknown_email_answers_like_a_known_one_and_sends_no_mail(
    make_api: Callable[..., Api], register: Any, mailbox: Mailbox, db: asyncpg.Pool
) -> None:
    known = await register(make_api())
    ghost = new_email("ghost")
    api = make_api()

    unknown_reply = await api.post(f"{AUTH}/password-reset", {"email": ghost})
    known_reply = await api.post(f"{AUTH}/password-reset", {"email": known["email"]})
    assert unknown_reply.status == known_reply.status == 202, (unknown_reply.body, known_reply.body)
    assert set(unknown_reply.body) == set(known_reply.body) == {"flow_id", "expires_at"}

    # The known address gets its mail (so the mail path works); the unknown one gets nothing.
    await mailbox.wait_count(known["email"], 2)
    assert mailbox.to(ghost) == []
    assert await users_count(db, email=ghost) == 0

    # Guessing a code for it is just a wrong code.
    reply = await api.post(
        f"{AUTH}/password-reset/verify", {"flow_id": unknown_reply.body["flow_id"], "code": "123456"}
    )
    assert_error(reply, 422, "invalid_code")


async def test_completing_a_password_reset_revokes_every_session(
    make_api: Callable[..., Api], register: Any, mailbox: Mailbox, db: asyncpg.Pool
) -> None:
    api = make_api()
    user = await register(api)
    token_sets = [user["tokens"]]
    for _ in range(2):
        reply = await api.post(f"{AUTH}/login", {"login": user["email"], "password": user["password"]})
        assert reply.status == 200, reply.body
        token_sets.append(reply.body["tokens"])
    for tokens in token_sets:
        assert (await me_status(api, tokens["access_token"])).status == 200

    started = await api.post(f"{AUTH}/password-reset", {"email": user["email"]})
    flow_id = started.body["flow_id"]
    code = await mailbox.code(user["email"], nth=2)
    assert (await api.post(f"{AUTH}/password-reset/verify", {"flow_id": flow_id, "code": code})).status == 200
    done = await api.post(f"{AUTH}/password-reset/complete", {"flow_id": flow_id, "new_password": "Fresh-Start-31"})
    assert done.status == 200, done.body

    for tokens in token_sets:
        assert_error(await me_status(api, tokens["access_token"]), 401)
        assert_error(await api.post(f"{AUTH}/refresh", {"refresh_token": tokens["refresh_token"]}), 401)
    rows = await sessions(db, user["user"]["id"])
    assert len(rows) == 3
    assert all(r["revoked_at"] is not None and r["revoked_reason"] == "password_reset" for r in rows)
    assert (await flow_row(db, flow_id))["consumed_at"] is not None

    assert_error(
        await api.post(f"{AUTH}/login", {"login": user["email"], "password": user["password"]}),
        401,
        "invalid_credentials",
    )
    assert (await api.post(f"{AUTH}/login", {"login": user["email"], "password": "Fresh-Start-31"})).status == 200


# ---------------------------------------------------------------- login


async def test_login_with_an_unknown_user_is_401_invalid_credentials(api: Api, db: asyncpg.Pool) -> None:
    before = await db.fetchval("SELECT count(*) FROM sessions")
    for login in (unique("nobody"), new_email("nobody"), "x" * 300, "", "@"):
        reply = await api.post(f"{AUTH}/login", {"login": login, "password": "Whatever-123"})
        assert_error(reply, 401, "invalid_credentials")
    assert await db.fetchval("SELECT count(*) FROM sessions") == before


async def test_login_by_username_or_email_is_case_insensitive(
    make_api: Callable[..., Api], register: Any, db: asyncpg.Pool
) -> None:
    api = make_api()
    user = await register(api)
    for login in (user["username"].upper(), f"  {user['username'].title()} ", user["email"].upper()):
        reply = await api.post(f"{AUTH}/login", {"login": login, "password": user["password"]})
        assert reply.status == 200, (login, reply.body)
        assert reply.body["user"]["id"] == user["user"]["id"]
    # The password itself is case-sensitive, and a wrong one opens no session.
    reply = await api.post(f"{AUTH}/login", {"login": user["username"], "password": user["password"].upper()})
    assert_error(reply, 401, "invalid_credentials")
    assert len(await sessions(db, user["user"]["id"])) == 4


async def test_login_with_a_missing_field_is_422(api: Api) -> None:
    err = assert_error(await api.post(f"{AUTH}/login", {"login": "someone"}), 422, "validation_failed")
    assert err["details"]["fields"] == {"password": "is required"}
    err = assert_error(await api.post(f"{AUTH}/login", {"password": "x", "remember_me": True}), 422)
    assert err["details"]["fields"] == {"login": "is required", "remember_me": "is not a known field"}


# ---------------------------------------------------------------- rate limit


async def test_hammering_login_from_one_ip_is_429_with_retry_after_and_another_ip_is_unaffected(
    make_api: Callable[..., Api],
) -> None:
    hammer = make_api()
    body = {"login": new_email("hammer"), "password": "Wrong-pass-1"}
    refused: Reply | None = None
    allowed = 0
    for n in range(40):  # a new login each time: this is the per-IP limit, not the per-account one
        reply = await hammer.post(f"{AUTH}/login", {**body, "login": new_email(f"hammer{n}")})
        if reply.status == 429:
            refused = reply
            break
        assert_error(reply, 401, "invalid_credentials")
        allowed += 1
    assert refused is not None, "no 429 within 40 requests"
    assert 29 <= allowed <= 31, allowed  # auth=30/60 (a sliding window may shift it by one)
    err = assert_error(refused, 429, "rate_limited")
    retry_after = refused.headers.get("retry-after", "")
    assert retry_after.isdigit() and 0 < int(retry_after) <= 60, retry_after
    assert err["details"]["retry_after"] == int(retry_after)

    # The whole auth bucket is closed for that IP, not just /login.
    assert_error(await hammer.post(f"{AUTH}/signup", {"email": new_email()}), 429, "rate_limited")

    bystander = make_api()
    assert_error(await bystander.post(f"{AUTH}/login", body), 401, "invalid_credentials")


# ---------------------------------------------------------------- routing


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_an_unknown_path_is_404_not_found_in_the_error_shape(make_api: Callable[..., Api], fmt: str) -> None:
    api = make_api(fmt)
    for path in ("/api/v1/nope", "/api/v1/auth/signup/extra", "/api/v2/auth/login", "/nothing"):
        assert_error(await api.get(path), 404, "not_found")
    assert_error(await api.post("/api/v1/nope", {"a": 1}), 404, "not_found")


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_a_wrong_method_is_405_in_the_error_shape(make_api: Callable[..., Api], fmt: str) -> None:
    api = make_api(fmt)
    reply = await api.get(f"{AUTH}/login")
    assert_error(reply, 405, "method_not_allowed")
    assert "POST" in reply.headers.get("allow", "")
    assert_error(await api.delete(f"{AUTH}/signup"), 405, "method_not_allowed")
    assert_error(await api.post("/api/v1/me", {"name": "x"}), 405, "method_not_allowed")


async def test_the_auth_limit_is_shared_by_both_worker_processes(server: Any) -> None:
    """30 logins a minute per IP in total, whichever process serves them (new connection per request; each
    answer names its worker in the test-only X-Worker-Pid header)."""
    ip = fresh_ip()
    statuses = []
    pids = []
    for n in range(31):
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            response = await client.post(
                f"{AUTH}/login",
                json={"login": f"nobody{n}", "password": "Wrong-pass-1"},
                headers={"X-Forwarded-For": ip},
            )
        statuses.append(response.status_code)
        pids.append(int(response.headers["x-worker-pid"]))
    assert statuses[:30] == [401] * 30
    assert statuses[30] == 429
    # Both workers counted into the one limit: each served some of the 30 that were let through.
    assert len(set(pids[:30])) == 2, f"one worker served all 30: {set(pids)}"
