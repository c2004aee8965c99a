"""Realtime stories of the unhappy path: clients that vanish, shards that restart mid-close, pushes that were
dropped, streams that Redis lost or trimmed, and presence details."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest
import redis.asyncio as aioredis

from tests.api.realtime_helpers import emit, raw_socket, reset, stream_pos
from tests.conftest import REDIS_URL, Server
from tests.support import Api, WsClient, wait_until


@pytest.fixture
async def rds() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


def stream_key(server: Server, user_id: str) -> str:
    return server.env["REDIS_PREFIX"] + f"events:{{{user_id}}}"  # as Keys.events (a hash tag)


async def watch_presence(server: Server, watcher: Api, username: str) -> WsClient:
    """A socket subscribed to ``username``'s presence, its snapshot already read."""
    ws = await WsClient.connect(server.base_url, watcher.token)
    reply = await ws.request("subscribe", {"topic": f"presence:{username}"})
    assert reply["ok"], reply
    await ws.next_of("presence")
    return ws


async def live_socket(server: Server, make_api: Any, register: Any) -> tuple[Api, str, WsClient]:
    """A new user's socket that has received one live event (so its position is a real stream id)."""
    api = make_api("json")
    user = await register(api)
    uid = str(user["user"]["id"])
    ws = await WsClient.connect(server.base_url, api.token)
    await ws.gateway()
    first = (await emit(api, uid))[0]
    assert (await ws.next_of("test.event"))["id"] == first
    return api, uid, ws


async def next_presence(ws: WsClient, online: bool, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        frame = await ws.next_of("presence", timeout=max(0.01, deadline - time.monotonic()))
        if frame["data"]["online"] is online:
            return dict(frame["data"])


async def test_a_client_reset_mid_replay_ends_its_handler_goes_offline_and_replays_everything_on_reconnect(
    server: Server, make_api: Any, register: Any
) -> None:
    api, watcher_api = make_api("json"), make_api("json")
    user = await register(api)
    await register(watcher_api)
    uid = user["user"]["id"]
    since = (await emit(api, uid))[0]
    missed: list[str] = []
    for batch in range(6):  # 6,000 events of about 4 KB: far more than the socket buffers hold
        missed += await emit(api, uid, 1000, note=f"{batch}" + "x" * 4000)
    missed.sort(key=stream_pos)
    watcher = await watch_presence(server, watcher_api, user["username"])

    sock = await asyncio.to_thread(raw_socket, server.base_url, api.token, since)
    await next_presence(watcher, True, timeout=10)
    got = await asyncio.to_thread(sock.recv, 16384)  # a few frames...
    assert got
    await asyncio.sleep(2)  # ...then the client stops reading: the socket buffers and the send queue fill up
    reset_at = time.monotonic()
    await asyncio.to_thread(reset, sock)

    offline = await next_presence(watcher, False, timeout=10)
    elapsed = time.monotonic() - reset_at
    print(f"reset -> offline: {elapsed:.2f} s")
    assert elapsed < 3.0, elapsed
    assert offline["last_seen"].endswith("Z")

    # Every missed event comes back once, in order, on a reconnect with the same since.
    ws = await WsClient.connect(server.base_url, api.token, since=since)
    replayed = [(await ws.next_of("test.event", timeout=30))["id"] for _ in range(len(missed))]
    assert replayed == missed
    assert [f for f in await ws.quiet(0.3) if f["type"] == "test.event"] == []
    await ws.close()
    await watcher.close()


async def test_a_socket_closed_while_its_shard_restarts_goes_offline_with_last_seen(
    server: Server, make_api: Any, register: Any
) -> None:
    api, watcher_api = make_api("json"), make_api("json")
    user = await register(api)
    await register(watcher_api)
    watcher = await watch_presence(server, watcher_api, user["username"])
    ws = await WsClient.connect(server.base_url, api.token)
    await ws.gateway()
    await next_presence(watcher, True, timeout=10)

    shards = (await api.get("/api/v1/_test/shards")).body
    for shard in shards:
        os.kill(shard["pid"], signal.SIGKILL)
    killed_at = time.monotonic()
    await ws.close()  # while the shards restart: its disconnect cannot reach them

    offline = await next_presence(watcher, False, timeout=30)
    print(f"shard kill + close -> offline: {time.monotonic() - killed_at:.2f} s")
    assert offline["last_seen"].endswith("Z")

    # A later subscription's snapshot says offline, with last_seen.
    await watcher.request("unsubscribe", {"topic": f"presence:{user['username']}"})

    async def snapshot() -> dict[str, Any] | None:
        reply = await watcher.request("subscribe", {"topic": f"presence:{user['username']}"})
        if not reply["ok"]:
            return None
        data = dict((await watcher.next_of("presence"))["data"])
        await watcher.request("unsubscribe", {"topic": f"presence:{user['username']}"})
        return data

    data = await wait_until(snapshot, timeout=30, interval=0.5)
    assert data["online"] is False
    assert data["last_seen"] is not None
    await watcher.close()


async def test_an_event_whose_live_push_was_dropped_arrives_without_waiting_for_the_next_event(
    server: Server, make_api: Any, register: Any, rds: aioredis.Redis
) -> None:
    _api, uid, ws = await live_socket(server, make_api, register)
    # Stored in the stream, but its push never reached the gateway (as when a shard restarts mid-push).
    data = msgpack.packb({"n": 7, "note": "dropped push"}, use_bin_type=True)
    dropped = (await rds.xadd(stream_key(server, uid), {"t": "test.event", "d": data})).decode()
    frame = await ws.next_of("test.event", timeout=10)
    assert frame["id"] == dropped
    assert frame["data"] == {"n": 7, "note": "dropped push"}
    await ws.close()


async def test_a_username_change_shows_in_later_presence_events(server: Server, make_api: Any, register: Any) -> None:
    api, watcher_api = make_api("json"), make_api("json")
    user = await register(api)
    await register(watcher_api)
    watcher = await watch_presence(server, watcher_api, user["username"])
    ws = await WsClient.connect(server.base_url, api.token)
    await ws.gateway()
    assert (await next_presence(watcher, True, timeout=10))["username"] == user["username"]
    renamed = user["username"] + "_2"
    assert (await api.patch("/api/v1/me", {"username": renamed})).status == 200
    await ws.close()
    assert (await next_presence(watcher, False, timeout=10))["username"] == renamed
    await watcher.close()


async def test_a_since_whose_stream_redis_lost_gets_resync_required(
    server: Server, make_api: Any, register: Any, rds: aioredis.Redis
) -> None:
    api = make_api("json")
    user = await register(api)
    uid = user["user"]["id"]
    ids = await emit(api, uid, 3)
    await rds.delete(stream_key(server, uid))  # as after a Redis restart without persistence
    ws = await WsClient.connect(server.base_url, api.token, since=ids[1])
    first = await ws.next()
    assert first["type"] == "resync_required", first
    assert first["data"]["oldest_id"] is None
    live = (await emit(api, uid))[0]
    assert (await ws.next_of("test.event"))["id"] == live
    await ws.close()


async def test_a_connected_socket_whose_position_was_trimmed_away_gets_resync_required(
    server: Server, make_api: Any, register: Any, rds: aioredis.Redis
) -> None:
    api, uid, ws = await live_socket(server, make_api, register)
    # Events the socket never got live, then retention trims past its position.
    key = stream_key(server, uid)
    for n in range(10):
        await rds.xadd(key, {"t": "test.event", "d": msgpack.packb({"n": n, "note": "unseen"})})
    await rds.xtrim(key, maxlen=3, approximate=False)
    oldest = (await rds.xrange(key, count=1))[0][0].decode()
    frame = await ws.next_of("resync_required", timeout=10)
    assert frame["id"] is None
    assert frame["data"]["oldest_id"] == oldest
    live = (await emit(api, uid))[0]
    assert (await ws.next_of("test.event"))["id"] == live
    await ws.close()


async def test_since_0_1_on_a_stream_never_trimmed_replays_everything(
    server: Server, make_api: Any, register: Any
) -> None:
    api = make_api("json")
    user = await register(api)
    uid = user["user"]["id"]
    ids = await emit(api, uid, 5)
    ws = await WsClient.connect(server.base_url, api.token, since="0-1")
    got = [await ws.next() for _ in range(5)]
    assert [f["type"] for f in got] == ["test.event"] * 5
    assert [f["id"] for f in got] == sorted(ids, key=stream_pos) == ids
    await ws.close()


async def test_a_socket_opened_while_its_shard_restarts_is_registered_and_gets_what_was_stored_meanwhile(
    server: Server, make_api: Any, register: Any
) -> None:
    api, watcher_api = make_api("json"), make_api("json")
    user = await register(api)
    await register(watcher_api)
    uid = user["user"]["id"]
    watcher = await watch_presence(server, watcher_api, user["username"])
    shards = (await api.get("/api/v1/_test/shards")).body
    for shard in shards:
        os.kill(shard["pid"], signal.SIGKILL)
    ws = await WsClient.connect(server.base_url, api.token)  # its connect races the restart
    stored = await emit(api, uid, 3, note="during restart")
    assert (await next_presence(watcher, True, timeout=30))["username"] == user["username"]
    got = [(await ws.next_of("test.event", timeout=30))["id"] for _ in range(3)]
    assert got == sorted(stored, key=stream_pos)
    assert [f for f in await ws.quiet(0.5) if f["type"] == "test.event"] == []  # once each
    await ws.close()
    assert (await next_presence(watcher, False, timeout=30))["last_seen"]
    await watcher.close()
