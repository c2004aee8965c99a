"""Limits per account and per address as well as per IP: the per-address mail quota counts the address mail
really goes to (fullwidth and ideographic-dot variants share it), failed logins count per account across IPs,
wrong codes per address across flows, token refreshes have their own per-IP bucket, and socket handshakes are
limited per IP. Each refusal is 429 ``rate_limited`` with ``Retry-After``, and writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import websockets
from websockets.exceptions import InvalidStatus

from tests.conftest import Server
from tests.support import Api, Mailbox, Reply, assert_error, fresh_ip, unique

AUTH = "/api/v1/auth"


def assert_limited(reply: Reply, window: int) -> None:
    err = assert_error(reply, 429, "rate_limited")
    retry_after = reply.headers.get("retry-after", "")
    assert retry_after.isdigit() and 0 < int(retry_after) <= window, retry_after
    assert err["details"]["retry_after"] == int(retry_after)


async def test_fullwidth_and_ideographic_dot_variants_of_one_address_share_its_mail_quota(
    make_api: Callable[..., Api], mailbox: Mailbox, db: asyncpg.Pool
) -> None:
    local = unique("victim")
    address = f"{local}@example.com"
    variants = [
        address,
        f"{local}@ｅｘａｍｐｌｅ.ｃｏｍ",
        f"{local}@example。com",
        f"{local}@example．com",
        f"{local}@EXAMPLE｡COM",
        f"{local.upper()}@Example.Com",
        "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in local) + "@example.com",  # fullwidth local
        f"{local}@ｅｘａｍｐｌｅ。ｃｏｍ",
        f" {local}@example.com ",
    ]
    statuses = []
    for n, variant in enumerate(variants):  # a new IP each time: only the per-address quota is in play
        path = "signup" if n % 2 == 0 else "password-reset"  # both flows draw on the one quota
        reply = await make_api().post(f"{AUTH}/{path}", {"email": variant})
        statuses.append(reply.status)
        if reply.status == 429:
            assert_limited(reply, 600)
    assert statuses == [202] * 5 + [429] * 4, statuses  # auth_email=5/600
    # Mail went to the normalized address only (the signups; resets of an unknown address send nothing).
    await mailbox.wait_count(address, 3)
    assert len(mailbox.to(address)) == 3
    assert int(await db.fetchval("SELECT count(*) FROM auth_flows WHERE email = $1", address)) == 5


async def test_ten_failed_logins_lock_the_account_across_ips_even_for_the_right_password(
    make_api: Callable[..., Api], register: Any
) -> None:
    owner = await register(make_api())
    for n in range(10):  # ten IPs, alternating email and username
        login = owner["email"] if n % 2 else owner["username"].upper()
        reply = await make_api().post(f"{AUTH}/login", {"login": login, "password": f"Wrong-{n}-pass"})
        assert_error(reply, 401, "invalid_credentials")
    right = {"login": owner["username"], "password": owner["password"]}
    assert_limited(await make_api().post(f"{AUTH}/login", right), 900)  # login_account=10/900
    assert_limited(await make_api().post(f"{AUTH}/login", {**right, "password": "Wrong-again-1"}), 900)
    # Another account, from the same IPs, is unaffected; the locked owner's existing session still works.
    other = await register(make_api())
    assert (
        await make_api().post(f"{AUTH}/login", {"login": other["email"], "password": other["password"]})
    ).status == 200
    owner_api = make_api()
    owner_api.token = owner["tokens"]["access_token"]
    assert (await owner_api.get("/api/v1/me")).status == 200


async def test_an_unknown_login_is_locked_like_a_known_one(make_api: Callable[..., Api]) -> None:
    ghost = f"{unique('ghost')}@example.com"
    for n in range(10):
        reply = await make_api().post(f"{AUTH}/login", {"login": ghost, "password": f"Wrong-{n}-pass"})
        assert_error(reply, 401, "invalid_credentials")
    assert_limited(await make_api().post(f"{AUTH}/login", {"login": ghost.upper(), "password": "Wrong-x-pass"}), 900)


async def test_wrong_codes_count_per_address_across_flows_and_then_even_the_right_code_is_429(
    make_api: Callable[..., Api], mailbox: Mailbox, db: asyncpg.Pool
) -> None:
    email = f"{unique('guessed')}@example.com"
    flows = []
    for nth in (1, 2, 3):
        reply = await make_api().post(f"{AUTH}/signup", {"email": email})
        assert reply.status == 202, reply.body
        flows.append((reply.body["flow_id"], await mailbox.code(email, nth=nth)))
    # Five wrong codes burn the first flow, five more the second, each from a new IP (code_email=10/3600).
    for flow_id, code in flows[:2]:
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        for _ in range(5):
            reply = await make_api().post(f"{AUTH}/signup/verify", {"flow_id": flow_id, "code": wrong})
            assert_error(reply, 422, "invalid_code")
    flow_id, code = flows[2]
    reply = await make_api().post(f"{AUTH}/signup/verify", {"flow_id": flow_id, "code": code})
    assert_limited(reply, 3600)
    row = await db.fetchrow("SELECT attempts, verified_at FROM auth_flows WHERE id = $1", int(flow_id))
    assert row["attempts"] == 0 and row["verified_at"] is None  # the refused guess wrote nothing
    # The reset flows of that address draw on the same count.
    reset = await make_api().post(f"{AUTH}/password-reset", {"email": email})
    reply = await make_api().post(f"{AUTH}/password-reset/verify", {"flow_id": reset.body["flow_id"], "code": "123456"})
    assert_limited(reply, 3600)


async def test_refreshes_have_their_own_bucket_so_a_busy_address_keeps_its_sessions(
    make_api: Callable[..., Api], register: Any
) -> None:
    nat = fresh_ip()
    user = await register(make_api())
    crowd = make_api(ip=nat)
    # The address has used up its auth bucket (auth=30/60) with logins...
    for n in range(40):
        reply = await crowd.post(f"{AUTH}/login", {"login": unique(f"nat{n}"), "password": "Wrong-pass-1"})
        if reply.status == 429:
            break
    assert_limited(reply, 60)
    # ...yet users behind it still refresh their tokens, well past 30 a minute.
    token = user["tokens"]["refresh_token"]
    for _ in range(40):
        reply = await crowd.post(f"{AUTH}/refresh", {"refresh_token": token})
        assert reply.status == 200, reply.body
        token = reply.body["tokens"]["refresh_token"]


async def test_socket_handshakes_are_limited_per_ip_before_the_upgrade(server: Server, make_api: Any) -> None:
    url = server.base_url.replace("http://", "ws://") + "/api/v1/ws"
    ip = fresh_ip()

    async def handshake(client_ip: str) -> Any:
        try:
            conn = await websockets.connect(url, additional_headers={"X-Forwarded-For": client_ip}, open_timeout=10)
        except InvalidStatus as exc:
            return exc.response
        await conn.close()
        raise AssertionError("a socket without a token was accepted")

    statuses = [(await handshake(ip)).status_code for _ in range(121)]  # ws_connect=120/60
    assert statuses[:120] == [401] * 120, statuses
    refused = await handshake(ip)
    assert refused.status_code == 429
    retry_after = refused.headers.get("retry-after", "")
    assert retry_after.isdigit() and 0 < int(retry_after) <= 60, refused.headers
    assert b'"rate_limited"' in refused.body
    assert (await handshake(fresh_ip())).status_code == 401  # another address is unaffected
