"""The seed's auth story in our API, in JSON and in MessagePack: signup -> logout -> wrong password -> login ->
reset -> login with the new password -> signup again with the same email."""

from __future__ import annotations

from typing import Any

from tests.support import ME_KEYS, Api, Mailbox, assert_error, unique


async def test_user_signs_up_resets_password_and_logs_in_again(any_api: Api, mailbox: Mailbox, db: Any) -> None:
    api = any_api
    username = unique("suberu")
    email = f"{username.upper()}@Example.COM"
    password = "first-Pass-1"

    # 1. Request an account: 202 with a flow id; a 6-digit code arrives by mail.
    started = await api.post("/api/v1/auth/signup", {"email": email})
    assert started.status == 202, started.body
    assert set(started.body) == {"flow_id", "expires_at"}
    flow_id = started.body["flow_id"]
    assert isinstance(flow_id, str) and flow_id.isdigit()
    assert started.body["expires_at"].endswith("Z")
    code = await mailbox.code(email.lower())

    # 2. A wrong code is refused and counted.
    wrong = "000000" if code != "000000" else "111111"
    reply = await api.post("/api/v1/auth/signup/verify", {"flow_id": flow_id, "code": wrong})
    err = assert_error(reply, 422, "invalid_code")
    assert err["details"]["attempts_left"] == 4

    # 3. The right code verifies the email.
    reply = await api.post("/api/v1/auth/signup/verify", {"flow_id": flow_id, "code": code})
    assert reply.status == 200, reply.body
    assert reply.body == {"flow_id": flow_id, "email": email.lower()}

    # 4. Complete: 201 with Me and tokens.
    reply = await api.post(
        "/api/v1/auth/signup/complete",
        {"flow_id": flow_id, "username": username, "name": "Suberu Q", "password": password, "birthday": "1999-12-31"},
    )
    assert reply.status == 201, reply.body
    me, tokens = reply.body["user"], reply.body["tokens"]
    assert set(me) == ME_KEYS
    assert me["username"] == username and me["email"] == email.lower() and me["bio"] == ""
    assert me["birthday"] == "1999-12-31" and me["avatar"] is None
    assert (me["followers_count"], me["following_count"], me["posts_count"]) == (0, 0, 0)
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900

    api.token = tokens["access_token"]
    reply = await api.get("/api/v1/me")
    assert reply.status == 200 and reply.body == me

    # 5. Sign out: the access token and the refresh token stop working at once.
    assert (await api.post("/api/v1/auth/logout")).status == 204
    assert assert_error(await api.get("/api/v1/me"), 401, "unauthenticated")["details"]["reason"] == "session_revoked"
    assert_error(await api.post("/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}), 401)
    api.token = None

    # 6. Wrong password: 401 invalid_credentials (no hint which part was wrong).
    reply = await api.post("/api/v1/auth/login", {"login": email, "password": "wrong-Pass-1"})
    assert_error(reply, 401, "invalid_credentials")

    # 7. Right password by email: 200 with Me and tokens.
    reply = await api.post("/api/v1/auth/login", {"login": email, "password": password})
    assert reply.status == 200, reply.body
    assert reply.body["user"]["id"] == me["id"]
    api.token = reply.body["tokens"]["access_token"]

    # 8. Sign out.
    assert (await api.post("/api/v1/auth/logout")).status == 204
    api.token = None

    # 9-12. Password reset in three steps.
    reply = await api.post("/api/v1/auth/password-reset", {"email": email})
    assert reply.status == 202 and set(reply.body) == {"flow_id", "expires_at"}
    reset_flow = reply.body["flow_id"]
    reset_code = await mailbox.code(email.lower(), nth=2)
    wrong = "000000" if reset_code != "000000" else "111111"
    assert_error(
        await api.post("/api/v1/auth/password-reset/verify", {"flow_id": reset_flow, "code": wrong}),
        422,
        "invalid_code",
    )
    reply = await api.post("/api/v1/auth/password-reset/verify", {"flow_id": reset_flow, "code": reset_code})
    assert reply.status == 200, reply.body
    new_password = "second-Pass-2"
    reply = await api.post(
        "/api/v1/auth/password-reset/complete", {"flow_id": reset_flow, "new_password": new_password}
    )
    assert reply.status == 200 and reply.body == {"password_changed": True}

    # 13. The old password no longer works; the new one does, by username.
    assert_error(
        await api.post("/api/v1/auth/login", {"login": username, "password": password}), 401, "invalid_credentials"
    )
    reply = await api.post("/api/v1/auth/login", {"login": username.upper(), "password": new_password})
    assert reply.status == 200 and reply.body["user"]["username"] == username

    # 14. A new account with the same email (any case): the same 202 as for a new address (no enumeration);
    # the owner gets a notice, not a code, and no code completes that flow.
    again = await api.post("/api/v1/auth/signup", {"email": email.lower()})
    assert again.status == 202 and set(again.body) == {"flow_id", "expires_at"}, again.body
    notice = (await mailbox.wait_count(email.lower(), 3))[2]
    assert "tried to sign up" in notice["Subject"] and not mailbox.CODE.search(str(notice.get_payload()))
    reply = await api.post("/api/v1/auth/signup/verify", {"flow_id": again.body["flow_id"], "code": code})
    assert assert_error(reply, 422, "invalid_code")["details"]["attempts_left"] == 4
    assert await db.fetchval("SELECT count(*) FROM users WHERE email = $1", email.lower()) == 1
