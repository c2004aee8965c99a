"""Realtime stories over real sockets: two gateway processes, Redis, Ray shards, PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import Any

import asyncpg
import jwt
import pytest
import redis.asyncio as aioredis
import websockets

from actors.runtime.registry import shard_index
from domain.tokens import JWT_SIGNING, derive_key
from tests.api.realtime_helpers import emit, socket_on_gateway, stream_pos
from tests.conftest import REDIS_URL, TEST_JWT_SECRET, Server
from tests.support import Api, WsClient, wait_until


@pytest.fixture
async def pair(make_api: Any, register: Any) -> tuple[Api, dict[str, Any], Api, dict[str, Any]]:
    alice_api, bob_api = make_api("json"), make_api("json")
    alice = await register(alice_api)
    bob = await register(bob_api)
    return alice_api, alice, bob_api, bob


async def test_presence_reaches_a_subscriber_on_another_gateway_process(
    server: Server, pair: Any, db: asyncpg.Pool
) -> None:
    alice_api, alice, bob_api, _bob = pair
    bob_ws, bob_gateway = await socket_on_gateway(server.base_url, bob_api.token)

    # Subscribing gives a snapshot first: alice has never connected.
    reply = await bob_ws.request("subscribe", {"topic": f"presence:{alice['username'].upper()}"})
    assert reply["ok"], reply
    snapshot = await bob_ws.next_of("presence")
    assert snapshot == {
        "id": None,
        "type": "presence",
        "data": {"username": alice["username"], "online": False, "last_seen": None},
    }

    # Alice's phone connects on the other gateway process: bob sees her come online. (A try that lands on
    # bob's own process is closed again, and bob sees that too, in order.)
    for _ in range(40):
        phone = await WsClient.connect(server.base_url, alice_api.token)
        phone_gateway = await phone.gateway()
        online = await bob_ws.next_of("presence")
        assert online["data"] == {"username": alice["username"], "online": True, "last_seen": None}
        if phone_gateway != bob_gateway:
            break
        await phone.close()
        assert (await bob_ws.next_of("presence"))["data"]["online"] is False
    assert phone_gateway != bob_gateway

    # A second device keeps her online when the first one closes: no transition, no event.
    laptop = await WsClient.connect(server.base_url, alice_api.token)
    await laptop.gateway()
    await phone.close()
    assert [f for f in await bob_ws.quiet(0.5) if f["type"] == "presence"] == []

    # The last socket closes: offline, with last_seen, persisted in PostgreSQL.
    await laptop.close()
    offline = await bob_ws.next_of("presence")
    assert offline["data"]["online"] is False
    assert offline["data"]["last_seen"].endswith("Z")
    stored = await db.fetchval("SELECT last_seen FROM users WHERE id = $1", int(alice["user"]["id"]))
    assert stored is not None

    # Unsubscribed: her next connection sends bob nothing.
    reply = await bob_ws.request("unsubscribe", {"topic": f"presence:{alice['username']}"})
    assert reply["ok"], reply
    again = await WsClient.connect(server.base_url, alice_api.token)
    await again.gateway()
    assert [f for f in await bob_ws.quiet(0.5) if f["type"] == "presence"] == []

    # A fresh subscription's snapshot shows her online again.
    assert (await bob_ws.request("subscribe", {"topic": f"presence:{alice['username']}"}))["ok"]
    assert (await bob_ws.next_of("presence"))["data"]["online"] is True
    await again.close()
    await bob_ws.close()


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_reconnect_with_since_replays_missed_events_in_order_then_goes_live(
    server: Server, make_api: Any, register: Any, fmt: str
) -> None:
    api = make_api("json")
    user = await register(api)
    uid = user["user"]["id"]
    ws = await WsClient.connect(server.base_url, api.token, fmt=fmt)
    await ws.gateway()
    first = (await emit(api, uid))[0]
    got = await ws.next_of("test.event")
    assert got["id"] == first
    await ws.close()

    missed = await emit(api, uid, 50, note="while away")
    assert len(set(missed)) == 50
    ws = await WsClient.connect(server.base_url, api.token, fmt=fmt, since=first)
    replayed = [await ws.next_of("test.event") for _ in range(50)]
    assert [f["id"] for f in replayed] == missed
    assert [f["data"]["n"] for f in replayed] == list(range(50))
    assert sorted(missed, key=stream_pos) == missed

    live = (await emit(api, uid, note="live"))[0]
    frame = await ws.next_of("test.event")
    assert frame["id"] == live
    assert frame["data"] == {"n": 0, "note": "live"}
    assert [f for f in await ws.quiet(0.3) if f["type"] == "test.event"] == []
    await ws.close()


async def test_events_during_the_replay_arrive_once_and_in_order(server: Server, make_api: Any, register: Any) -> None:
    api = make_api("json")
    user = await register(api)
    uid = user["user"]["id"]
    since = (await emit(api, uid))[0]
    before = await emit(api, uid, 300)

    async def producer() -> list[str]:
        out: list[str] = []
        for _ in range(10):
            out += await emit(api, uid, 5)
        return out

    task = asyncio.create_task(producer())
    ws = await WsClient.connect(server.base_url, api.token, since=since)
    during = await task
    expected = before + during
    got = [(await ws.next_of("test.event"))["id"] for _ in range(len(expected))]
    assert got == sorted(expected, key=stream_pos)
    assert set(got) == set(expected)
    assert [f for f in await ws.quiet(0.3) if f["type"] == "test.event"] == []
    await ws.close()


async def test_since_older_than_retention_starts_with_resync_required(
    server: Server, make_api: Any, register: Any
) -> None:
    api = make_api("json")
    user = await register(api)
    uid = user["user"]["id"]
    ids = await emit(api, uid, 20)
    # Retention trimmed the oldest events (as MAXLEN does past the cap).
    client = aioredis.Redis.from_url(REDIS_URL)
    await client.xtrim(server.env["REDIS_PREFIX"] + f"events:{{{uid}}}", maxlen=5, approximate=False)
    await client.aclose()

    ws = await WsClient.connect(server.base_url, api.token, since=ids[0])
    first = await ws.next()
    assert first["type"] == "resync_required"
    assert first["id"] is None
    assert first["data"]["oldest_id"] == ids[-5]  # the oldest event still retained
    # Then it is live: new events arrive, the lost ones are not replayed.
    live = (await emit(api, uid))[0]
    assert (await ws.next_of("test.event"))["id"] == live
    await ws.close()

    ancient = f"{int(time.time() * 1000) - 40 * 86_400_000}-0"
    ws = await WsClient.connect(server.base_url, api.token, since=ancient)
    assert (await ws.next())["type"] == "resync_required"
    await ws.close()


async def test_an_event_left_in_the_outbox_by_a_crash_is_relayed(
    server: Server, make_api: Any, register: Any, db: asyncpg.Pool
) -> None:
    api = make_api("json")
    user = await register(api)
    ws = await WsClient.connect(server.base_url, api.token)
    await ws.gateway()
    # Committed but never published: as if the process died right after the commit.
    outbox_ids = await emit(api, user["user"]["id"], 3, publish=False, note="crash")
    frames = [await ws.next_of("test.event", timeout=30) for _ in range(3)]
    assert [f["data"]["n"] for f in frames] == [0, 1, 2]
    assert all(f["data"]["note"] == "crash" for f in frames)

    async def all_sent() -> bool:
        unsent = await db.fetchval(
            "SELECT count(*) FROM outbox WHERE id = ANY($1::bigint[]) AND sent_at IS NULL", [int(i) for i in outbox_ids]
        )
        return unsent == 0

    await wait_until(all_sent, timeout=10)
    assert [f for f in await ws.quiet(0.5) if f["type"] == "test.event"] == []
    await ws.close()


async def test_killing_a_user_shard_loses_no_acknowledged_event(server: Server, make_api: Any, register: Any) -> None:
    api = make_api("json")
    watcher_api = make_api("json")
    user = await register(api)
    watcher = await register(watcher_api)
    uid = user["user"]["id"]
    ws = await WsClient.connect(server.base_url, api.token)
    await ws.gateway()
    shards = (await api.get("/api/v1/_test/shards")).body
    target = shards[shard_index(int(uid), len(shards))]

    acknowledged: list[str] = []
    for round_ in range(40):
        if round_ == 10:
            os.kill(target["pid"], signal.SIGKILL)
        acknowledged += await emit(api, uid, 2, note=f"round {round_}")
        await asyncio.sleep(0.05)

    received: list[str] = []

    async def all_received() -> bool:
        while not ws.frames.empty():
            frame = ws.frames.get_nowait()
            if frame["type"] == "test.event":
                received.append(frame["id"])
        return set(acknowledged) <= set(received)

    await wait_until(all_received, timeout=30)
    assert len(received) == len(set(received)), "an event arrived twice on one socket"
    assert received == sorted(received, key=stream_pos)

    # The restarted shard learned again where the user is connected (gateway re-registration).
    async def restarted() -> bool:
        now = (await api.get("/api/v1/_test/shards")).body
        return now[target["index"]]["epoch"] != target["epoch"]

    await wait_until(restarted, timeout=30)
    watcher_ws = await WsClient.connect(server.base_url, watcher_api.token)

    async def seen_online() -> bool:
        reply = await watcher_ws.request("subscribe", {"topic": f"presence:{user['username']}"})
        assert reply["ok"], reply
        snapshot = await watcher_ws.next_of("presence")
        await watcher_ws.request("unsubscribe", {"topic": f"presence:{user['username']}"})
        return bool(snapshot["data"]["online"])

    await wait_until(seen_online, timeout=15, interval=0.5)
    live = (await emit(api, uid))[0]

    async def live_arrived() -> bool:
        await all_received()
        return live in received

    await wait_until(live_arrived, timeout=10)
    await ws.close()
    await watcher_ws.close()
    assert watcher["username"]


async def test_an_expired_access_token_closes_the_socket_with_4401(server: Server, pair: Any) -> None:
    alice_api, alice, _bob_api, _bob = pair
    now = int(time.time())
    claims = jwt.decode(alice_api.token, options={"verify_signature": False})
    short = jwt.encode(
        {**claims, "iat": now, "exp": now + 2}, derive_key(TEST_JWT_SECRET, JWT_SIGNING), algorithm="HS256"
    )
    ws = await WsClient.connect(server.base_url, short)
    assert (await ws.request("ping"))["ok"]
    code, _reason = await asyncio.wait_for(ws.closed, timeout=15)
    assert code == 4401
    assert alice["username"]


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_bad_frames_get_error_acks_and_the_socket_stays_usable(
    server: Server, make_api: Any, register: Any, fmt: str
) -> None:
    api = make_api("json")
    await register(api)
    ws = await WsClient.connect(server.base_url, api.token, fmt=fmt, query_token=True)

    async def raw_ack(raw: bytes | str) -> dict[str, Any]:
        await ws.send_raw(raw)
        frame = await ws.next_of("ack")
        assert frame["id"] is None
        return dict(frame["data"])

    garbage = b"\xc1\xc1" if fmt == "msgpack" else "{not json"
    reply = await raw_ack(garbage)
    assert (reply["ok"], reply["error"]["code"]) == (False, "malformed_frame")
    reply = await raw_ack(b"\x93\x01\x02\x03" if fmt == "msgpack" else "[1, 2, 3]")
    assert reply["error"]["code"] == "malformed_frame"

    reply = await ws.request("no.such.action")
    assert reply["error"]["code"] == "unknown_action"
    reply = await ws.request("subscribe", {"topic": "presence:nobody_here_at_all"})
    assert reply["error"]["code"] == "not_found"
    reply = await ws.request("subscribe", {"topic": "post:123456"})
    assert reply["error"]["code"] == "not_found"
    reply = await ws.request("subscribe", {"topic": "weather:today"})
    assert reply["error"]["code"] == "validation_failed"
    reply = await ws.request("subscribe", {"topic": "presence:x", "extra": 1})
    assert reply["error"]["code"] == "validation_failed"
    assert "extra" in reply["error"]["details"]["fields"]
    reply = await ws.request("subscribe", {})
    assert reply["error"]["details"]["fields"] == {"topic": "is required"}

    big = {"ref": "big", "action": "ping", "data": {"pad": "x" * 70_000}}
    import msgpack
    import orjson

    reply = await raw_ack(msgpack.packb(big) if fmt == "msgpack" else orjson.dumps(big).decode())
    assert (reply["ref"], reply["error"]["code"]) == ("big", "payload_too_large")

    # Still usable after every per-frame error.
    assert (await ws.request("ping"))["ok"]

    # A frame beyond the protocol limit closes the socket (1009).
    with contextlib.suppress(websockets.ConnectionClosed, OSError):  # the server may close mid-send
        await ws.send_raw(b"x" * (1024 * 1024 + 10) if fmt == "msgpack" else "x" * (1024 * 1024 + 10))
    code, _ = await asyncio.wait_for(ws.closed, timeout=10)
    assert code == 1009


async def test_handshake_refusals_are_http_errors_before_the_upgrade(
    server: Server, make_api: Any, register: Any
) -> None:
    api = make_api("json")
    await register(api)

    async def refused(**kw: Any) -> int:
        with pytest.raises(websockets.InvalidStatus) as info:
            await WsClient.connect(server.base_url, **kw)
        return int(info.value.response.status_code)

    assert await refused(token=None) == 401
    assert await refused(token="not-a-token") == 401
    assert await refused(token=api.token, origin="https://evil.example") == 403
    assert await refused(token=api.token, subprotocols=["chat.v9"]) == 400
    assert await refused(token=api.token, since="yesterday") == 422
    # Our own origin is fine, and so is a native client without Origin.
    ws = await WsClient.connect(server.base_url, api.token, origin=server.base_url)
    assert (await ws.request("ping"))["ok"]
    await ws.close()
    # A logged-out session cannot open a socket.
    assert (await api.post("/api/v1/auth/logout")).status == 204
    assert await refused(token=api.token) == 401


async def test_logout_closes_that_sessions_sockets_on_every_gateway(
    server: Server, make_api: Any, register: Any, mailbox: Any
) -> None:
    api = make_api("json")
    user = await register(api)
    phone_token = api.token
    # A second session (another device) stays connected.
    login = await api.post("/api/v1/auth/login", {"login": user["username"], "password": user["password"]})
    tablet_token = login.body["tokens"]["access_token"]
    phone_a, gw_a = await socket_on_gateway(server.base_url, phone_token)
    phone_b, _ = await socket_on_gateway(server.base_url, phone_token, avoid=gw_a)
    tablet = await WsClient.connect(server.base_url, tablet_token)
    assert (await tablet.request("ping"))["ok"]

    api.token = phone_token
    assert (await api.post("/api/v1/auth/logout")).status == 204
    for ws in (phone_a, phone_b):
        code, _ = await asyncio.wait_for(ws.closed, timeout=10)
        assert code == 4401
    assert (await tablet.request("ping"))["ok"]

    # A password reset revokes every session, so the tablet's socket closes too.
    email = user["email"]
    flow = (await api.post("/api/v1/auth/password-reset", {"email": email})).body["flow_id"]
    code = await mailbox.code(email, nth=2)
    assert (await api.post("/api/v1/auth/password-reset/verify", {"flow_id": flow, "code": code})).status == 200
    reply = await api.post("/api/v1/auth/password-reset/complete", {"flow_id": flow, "new_password": "brand-New-7"})
    assert reply.status == 200
    closed, _ = await asyncio.wait_for(tablet.closed, timeout=10)
    assert closed == 4401


async def test_concurrent_writers_to_one_user_reach_the_socket_in_stream_order_without_gaps(
    server: Server, make_api: Any, register: Any
) -> None:
    api = make_api("json")
    user = await register(api)
    uid = user["user"]["id"]
    ws = await WsClient.connect(server.base_url, api.token)
    await ws.gateway()
    writers = [make_api("json") for _ in range(8)]  # separate connections: both api processes write at once
    batches = await asyncio.gather(*(emit(w, uid, 5, note=f"writer {i}") for i, w in enumerate(writers * 3)))
    expected = sorted((eid for batch in batches for eid in batch), key=stream_pos)
    got = [(await ws.next_of("test.event"))["id"] for _ in range(len(expected))]
    assert got == expected
    assert [f for f in await ws.quiet(0.3) if f["type"] == "test.event"] == []
    await ws.close()
