"""The home feed over real HTTP, WebSocket, Redis and Ray (issue 12): fan-out on write into timelines and live
``feed.post`` to followers' sockets, reposts with ``reposted_by``, unfollows and deletions hidden at once, a
timeline lost in Redis rebuilt, keyset pages stable under concurrent posts, a fan-out worker SIGKILLed mid-job
leaving every follower the entry exactly once, and big accounts merged at read and delivered live only."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgpack
import pytest
import redis.asyncio as aioredis

from actors.runtime.cluster import RayHead
from storage.ids import EPOCH_MS
from tests import media_samples as samples
from tests.api.test_posts import upload
from tests.asyncapi_frames import check_frame
from tests.conftest import REDIS_URL, Server, own_server
from tests.support import Api, Mailbox, WsClient, assert_error, unique, wait_until

FEED = "/api/v1/feed"


async def post_photo(api: Api, caption: str = "") -> dict[str, Any]:
    media = await upload(api, "image/png", samples.png())
    made = await api.post("/api/v1/posts", {"type": "photo", "caption": caption, "media_ids": [media]})
    assert made.status == 201, made.body
    return dict(made.body)


def timeline_items(page: dict[str, Any]) -> list[dict[str, Any]]:
    """The items of a feed page that come from the timeline: recommended items (with ``reasons``) follow them once
    the timeline is exhausted (tests/api/test_recommendations.py)."""
    items = list(page["items"])
    kept = [i for i in items if "reasons" not in i]
    assert items[: len(kept)] == kept, "recommended items only after the timeline's"
    return kept


async def feed_ids(api: Api, limit: int = 20) -> list[tuple[str, str | None]]:
    """(post id, reposter username) of the timeline items of the first feed page."""
    reply = await api.get(FEED, params={"limit": limit})
    assert reply.status == 200, reply.body
    return [(i["post"]["id"], (i["reposted_by"] or {}).get("username")) for i in timeline_items(reply.body)]


async def frames_of(ws: WsClient, types: set[str], timeout: float = 10.0) -> dict[str, dict[str, Any]]:
    """The first frame of each of ``types``, in whatever order they arrive."""
    got: dict[str, dict[str, Any]] = {}
    deadline = asyncio.get_running_loop().time() + timeout
    while set(got) != types:
        frame = await ws.next(max(0.01, deadline - asyncio.get_running_loop().time()))
        if frame["type"] in types and frame["type"] not in got:
            got[frame["type"]] = frame
    return got


async def follow(api: Api, username: str) -> None:
    assert (await api.put(f"/api/v1/users/{username}/follow")).status == 200


def _redis(server: Server) -> aioredis.Redis:
    return aioredis.from_url(server.env["REDIS_URL"])


def _key(server: Server, *parts: str) -> str:
    return server.env["REDIS_PREFIX"] + ":".join(parts)


async def test_a_follower_hears_of_a_new_post_live_and_reads_it_in_the_feed_with_reposts_unfollows_and_deletes(
    server: Server, make_api: Any, register: Any
) -> None:
    alice, bob, carol = make_api(), make_api("msgpack"), make_api()
    a, b, c = await register(alice), await register(bob), await register(carol)
    await follow(bob, a["username"])
    await follow(carol, b["username"])  # carol follows bob only: she sees alice's post when bob reposts it
    assert bob.token and carol.token
    bob_ws = await WsClient.connect(server.base_url, bob.token)
    carol_ws = await WsClient.connect(server.base_url, carol.token)
    await bob_ws.gateway()
    await carol_ws.gateway()

    post = await post_photo(alice, f"Morning run with @{b['username']} #run")
    got = await frames_of(bob_ws, {"feed.post", "notification"})
    frame = got["feed.post"]
    check_frame(frame)
    assert frame["id"] is not None  # stored: replayable
    assert frame["data"]["feed_item_id"] == post["id"] and frame["data"]["post_id"] == post["id"]
    assert frame["data"]["author"]["username"] == a["username"] and frame["data"]["reposted_by"] is None
    assert got["notification"]["data"]["type"] == "mention_post"
    assert await feed_ids(bob) == [(post["id"], None)]
    assert await feed_ids(alice) == [(post["id"], None)]  # your own posts are in your feed
    assert await feed_ids(carol) == []
    page = (await bob.get(FEED)).body
    (item,) = timeline_items(page)
    assert item["id"] == post["id"] and item["post"]["caption"] == post["caption"]
    assert item["post"]["author"]["username"] == a["username"] and item["created_at"] == post["created_at"]

    assert (await bob.put(f"/api/v1/posts/{post['id']}/repost")).status == 200
    repost = await carol_ws.next_of("feed.post")
    check_frame(repost)
    assert repost["data"]["post_id"] == post["id"] and repost["data"]["feed_item_id"] != post["id"]
    assert repost["data"]["reposted_by"]["username"] == b["username"]
    assert repost["data"]["author"]["username"] == a["username"]
    assert await feed_ids(carol) == [(post["id"], b["username"])]
    assert (await carol.get(FEED)).body["items"][0]["id"] == repost["data"]["feed_item_id"]
    assert [f["type"] for f in await bob_ws.quiet(0.5) if f["type"] == "feed.post"] == []  # not for your own

    # Undoing the repost takes it out of carol's feed at once.
    assert (await bob.delete(f"/api/v1/posts/{post['id']}/repost")).status == 200
    assert await feed_ids(carol) == []

    # Unfollowing hides the author at once; following again shows the post again.
    assert (await bob.delete(f"/api/v1/users/{a['username']}/follow")).status == 200
    assert await feed_ids(bob) == []
    await follow(bob, a["username"])
    assert await feed_ids(bob) == [(post["id"], None)]

    # A deleted post leaves every feed.
    assert (await alice.delete(f"/api/v1/posts/{post['id']}")).status == 204
    assert await feed_ids(bob) == [] and await feed_ids(alice) == []
    client = _redis(server)
    try:  # and the reads cleaned it out of the timelines (lazily)
        for who in (a, b):
            members = await client.zrange(_key(server, "tl", f"{{{who['user']['id']}}}"), 0, -1)
            assert b"~" in members and not any(f":{post['id']}:".encode() in m for m in members)
    finally:
        await client.aclose()

    # Replay: the stored feed.post comes back with since.
    await bob_ws.close()
    again = await WsClient.connect(server.base_url, bob.token, since="0-0")
    replayed = [f for f in await again.quiet(1.0) if f["type"] == "feed.post"]
    assert [f["id"] for f in replayed] == [frame["id"]]
    await again.close()
    await carol_ws.close()
    assert c["username"]


async def test_following_someone_shows_their_recent_posts_on_the_next_read(make_api: Any, register: Any) -> None:
    alice, bob = make_api(), make_api()
    a = await register(alice)
    await register(bob)
    first = await post_photo(alice, "one")
    second = await post_photo(alice, "two")
    assert await feed_ids(bob) == []  # bob's timeline exists now (built by this read), without alice
    await follow(bob, a["username"])
    assert await feed_ids(bob) == [(second["id"], None), (first["id"], None)]


async def test_a_timeline_lost_in_redis_is_rebuilt_and_the_feed_stays_right(
    server: Server, make_api: Any, register: Any
) -> None:
    alice, bob, dan = make_api(), make_api(), make_api()
    a, b, d = await register(alice), await register(bob), await register(dan)
    await follow(bob, a["username"])
    await follow(bob, d["username"])
    await follow(dan, a["username"])
    assert await feed_ids(bob) == []
    p1 = await post_photo(alice, "p1")
    p2 = await post_photo(dan, "p2")
    assert (await dan.put(f"/api/v1/posts/{p1['id']}/repost")).status == 200

    # Newest first: dan's repost of p1, dan's p2, alice's p1; a post seen twice shows once per page (the
    # newest entry of it).
    items = await feed_ids(bob)
    assert items == [(p1["id"], d["username"]), (p2["id"], None)]
    client = _redis(server)
    try:
        removed = await client.delete(_key(server, "tl", f"{{{b['user']['id']}}}"))
        assert removed == 1
        assert await feed_ids(bob) == items  # rebuilt from PostgreSQL, same page
        assert await client.exists(_key(server, "tl", f"{{{b['user']['id']}}}")) == 1
        # Everything at once: every timeline key of the run gone (a Redis flush of the feed).
        async for key in client.scan_iter(match=_key(server, "tl", "*")):
            await client.delete(key)
        assert await feed_ids(bob) == items
        p3 = await post_photo(alice, "p3")  # fan-out reaches the rebuilt timeline
        await wait_until(lambda: _contains(bob, p3["id"]), timeout=10)
    finally:
        await client.aclose()


async def _contains(api: Api, post_id: str) -> bool | None:
    return any(i[0] == post_id for i in await feed_ids(api)) or None


def _entry_id(at: dt.datetime, n: int) -> int:
    return ((int(at.timestamp() * 1000) - EPOCH_MS) << 22) + n


async def test_pages_over_250_posts_with_concurrent_posts_return_each_item_once_in_order(
    make_api: Any, register: Any, db: asyncpg.Pool
) -> None:
    alice, bob = make_api(), make_api()
    a = await register(alice)
    await register(bob)
    await follow(bob, a["username"])
    # 250 older posts written straight to the database (no fan-out for them: the feed finds them through the
    # rebuild and past the timeline's end), one a minute over the last hours.
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=6)
    rows = [
        (_entry_id(start + dt.timedelta(minutes=i), i), int(a["user"]["id"]), start + dt.timedelta(minutes=i))
        for i in range(250)
    ]
    await db.executemany(
        "INSERT INTO posts (id, author_id, type, caption, created_at) VALUES ($1, $2, 'photo', 'old', $3)", rows
    )
    await db.execute("UPDATE users SET posts_count = posts_count + 250 WHERE id = $1", int(a["user"]["id"]))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 30}
        if cursor:
            params["cursor"] = cursor
        reply = await bob.get(FEED, params=params)
        assert reply.status == 200, reply.body
        timeline = timeline_items(reply.body)
        seen += [i["id"] for i in timeline]
        pages += 1
        if pages in (2, 5):  # new posts while paging land above the cursor, never inside the pages
            await asyncio.gather(post_photo(alice, "new 1"), post_photo(alice, "new 2"))
        cursor = reply.body["next_cursor"]
        if cursor is None or len(timeline) < len(reply.body["items"]):  # past the timeline: recommendations
            break
    expected = [str(r[0]) for r in sorted(rows, reverse=True)]
    assert seen == expected
    assert pages == 9


async def test_bad_feed_requests_are_refused_with_their_errors(make_api: Any, register: Any) -> None:
    anon, bob = make_api(), make_api()
    await register(bob)
    assert_error(await anon.get(FEED), 401, "unauthenticated")
    for params in ({"limit": 0}, {"limit": 101}, {"limit": "x"}, {"cursor": "nope"}, {"cursor": "1-" + "9" * 30}):
        assert_error(await bob.get(FEED, params=params), 422, "validation_failed")
    far = await bob.get(FEED, params={"cursor": "99999999999999999-9223372036854775807"})  # clamped: the start
    assert far.status == 200 and timeline_items(far.body) == []
    assert timeline_items((await bob.get(FEED, params={"cursor": "0-0"})).body) == []  # past the end
    assert_error(await bob.get(FEED, headers={"Authorization": "Basic x"}), 401, "unauthenticated")
    assert_error(await bob.get(FEED, headers={"Authorization": "Bearer nope"}), 401, "unauthenticated")
    # A logged-out session reads nothing more, whether its feed is empty or not.
    await post_photo(bob, "mine")
    token = bob.token
    assert (await bob.post("/api/v1/auth/logout")).status == 204
    bob.token = token
    assert_error(await bob.get(FEED), 401, "unauthenticated")
    assert_error(await bob.get(FEED, params={"cursor": "0-0"}), 401, "unauthenticated")


# ------------------------------------------------------------ a fan-out worker killed mid-job


async def _seed_followers(db: asyncpg.Pool, author_id: int, n: int) -> list[int]:
    """``n`` followers of the author, straight into PostgreSQL (counters kept exact)."""
    base = _entry_id(dt.datetime.now(dt.UTC), 0) + (os.getpid() % 1000) * 4096 + 1
    ids = [base + i for i in range(n)]
    tag = unique("f")
    await db.copy_records_to_table(
        "users",
        records=[
            (uid, f"{tag}_{i}", f"{tag}_{i}@example.com", "F", dt.date(1990, 1, 1), "x") for i, uid in enumerate(ids)
        ],
        columns=["id", "username", "email", "name", "birthday", "password_hash"],
    )
    await db.copy_records_to_table(
        "follows", records=[(uid, author_id) for uid in ids], columns=["follower_id", "followee_id"]
    )
    await db.execute("UPDATE users SET following_count = 1 WHERE id = ANY($1::bigint[])", ids)
    await db.execute("UPDATE users SET followers_count = followers_count + $2 WHERE id = $1", author_id, n)
    return ids


async def test_a_fanout_worker_killed_mid_job_leaves_every_follower_the_entry_exactly_once(
    server: Server, make_api: Any, register: Any, db: asyncpg.Pool
) -> None:
    alice = make_api()
    a = await register(alice)
    followers = await _seed_followers(db, int(a["user"]["id"]), 4000)
    client = _redis(server)
    try:
        async with client.pipeline(transaction=False) as pipe:  # active followers: their timelines exist
            for uid in followers:
                pipe.zadd(_key(server, "tl", f"{{{uid}}}"), {"~": 0})
            await pipe.execute()
        progress = _key(server, "jobs", "feed", "progress")
        post = await post_photo(alice, "to 4,000 followers")

        async def in_flight() -> tuple[str, str] | None:
            pending = await client.xpending_range(_key(server, "jobs", "feed"), "workers", "-", "+", 10)
            for job in pending:
                if await client.hget(progress, job["message_id"]):
                    return job["message_id"].decode(), job["consumer"].decode()
            return None

        job_id, consumer = await wait_until(in_flight, timeout=20, interval=0.005)
        shards = (await alice.get("/api/v1/_test/shards")).body
        victim = next(s for s in shards if consumer.startswith(f"user-shard-{s['index']}-"))
        os.kill(victim["pid"], signal.SIGKILL)

        member = f":{post['id']}:{a['user']['id']}:0"

        async def all_have_it() -> bool | None:
            async with client.pipeline(transaction=False) as pipe:
                for uid in followers:
                    pipe.zrange(_key(server, "tl", f"{{{uid}}}"), 0, -1)
                found = await pipe.execute()
            return all(any(m.decode().endswith(member) for m in ms) for ms in found) or None

        await wait_until(all_have_it, timeout=60, interval=0.5)
        await wait_until(lambda: _gone(client, progress, job_id), timeout=30)
        async with client.pipeline(transaction=False) as pipe:
            for uid in followers:
                pipe.xrange(_key(server, "events", f"{{{uid}}}"))
            streams = await pipe.execute()
        counts = [
            sum(1 for _id, fields in entries if msgpack.unpackb(fields[b"d"])["feed_item_id"] == post["id"])
            for entries in streams
        ]
        assert counts == [1] * len(followers)  # one stored feed.post per follower, none twice, none lost
        timelines = [await client.zrange(_key(server, "tl", f"{{{uid}}}"), 0, -1) for uid in followers[:50]]
        assert all(sum(1 for m in ms if m.decode().endswith(member)) == 1 for ms in timelines)
    finally:
        await client.aclose()
    await wait_until(lambda: _shards_up(alice), timeout=60)


async def _gone(client: aioredis.Redis, progress: str, job_id: str) -> bool | None:
    return (not await client.hexists(progress, job_id)) or None


async def _shards_up(api: Api) -> bool | None:
    return (await api.get("/api/v1/_test/shards")).status == 200 or None


# ------------------------------------------------------------ big accounts: merged at read, live only


@pytest.fixture(scope="module")
def celebrity_server(
    redis_prefix: str, ray_head: RayHead, mailbox: Mailbox, run_id: str, workdir: Path
) -> Iterator[Server]:
    """A server whose fan-out threshold is 2 followers, in its own database, Redis prefix and Ray namespace."""
    with own_server(
        "celeb", redis_prefix, ray_head, mailbox, run_id, workdir,
        WORKERS="2", USER_SHARDS="2", CHAT_SHARDS="1", FANOUT_MAX_FOLLOWERS="2",
    ) as made:  # fmt: skip
        yield made


async def test_a_big_account_is_merged_at_read_and_reaches_connected_followers_live_only(
    celebrity_server: Server, register: Any
) -> None:
    apis = [Api(celebrity_server.base_url) for _ in range(4)]
    star, fan1, fan2, late = apis
    try:
        s = await register(star)
        for fan in (fan1, fan2):
            await register(fan)
            await follow(fan, s["username"])
        await register(late)
        for user in (late, fan2, star):
            assert await feed_ids(user) == []  # their timelines exist now (active users)
        await follow(late, s["username"])  # the third follower: star is above the threshold of 2 now
        assert fan1.token and late.token
        ws1 = await WsClient.connect(celebrity_server.base_url, fan1.token)  # followed before connecting
        await ws1.gateway()
        ws_late = await WsClient.connect(celebrity_server.base_url, late.token)
        await ws_late.gateway()
        assert (await fan1.delete(f"/api/v1/users/{s['username']}/follow")).status == 200
        await follow(fan1, s["username"])  # connected, then (re)followed: this socket starts forwarding too
        await asyncio.sleep(0.3)

        post = await post_photo(star, "hello everyone")
        for ws in (ws1, ws_late):
            live = await ws.next_of("feed.post")
            check_frame(live)
            assert live["id"] is None  # live only: big accounts store no event per follower
            assert live["data"]["post_id"] == post["id"] and live["data"]["author"]["username"] == s["username"]
        client = aioredis.from_url(REDIS_URL)
        try:
            prefix = celebrity_server.env["REDIS_PREFIX"]
            member_end = f":{post['id']}:{s['user']['id']}:0"
            fan2_tl = await client.zrange(f"{prefix}tl:{{{(await fan2.get('/api/v1/me')).body['id']}}}", 0, -1)
            assert b"~" in fan2_tl  # an active timeline ...
            assert not any(m.decode().endswith(member_end) for m in fan2_tl)  # ... that the post was not fanned to
            star_tl = await client.zrange(f"{prefix}tl:{{{s['user']['id']}}}", 0, -1)
            assert any(m.decode().endswith(member_end) for m in star_tl)  # but in the star's own timeline
        finally:
            await client.aclose()
        for fan in (fan1, fan2, late):
            assert await feed_ids(fan) == [(post["id"], None)]  # merged at read
        assert await feed_ids(star) == [(post["id"], None)]
        # After an unfollow the socket stops forwarding, and the feed drops the star at once.
        assert (await late.delete(f"/api/v1/users/{s['username']}/follow")).status == 200
        assert await feed_ids(late) == []
        await asyncio.sleep(0.3)
        await post_photo(star, "second")
        assert [f for f in await ws_late.quiet(1.0) if f["type"] == "feed.post"] == []
        assert (await ws1.next_of("feed.post"))["data"]["author"]["username"] == s["username"]
        await ws1.close()
        await ws_late.close()
    finally:
        for api in apis:
            await api.close()


async def test_a_big_accounts_new_post_shows_at_once_in_a_cached_feed_page(
    celebrity_server: Server, register: Any
) -> None:
    apis = [Api(celebrity_server.base_url) for _ in range(5)]
    star, fan, friend, other1, other2 = apis
    try:
        s = await register(star)
        f = await register(friend)
        for api in (fan, other1, other2):
            await register(api)
            await follow(api, s["username"])  # three followers: above the threshold of 2
        await follow(fan, f["username"])
        made = [await post_photo(friend, f"friend {i}") for i in range(3)]
        page = "/api/v1/feed?limit=2"
        first = (await fan.get(page)).body
        assert (await fan.get(page)).body == first  # cached (a page with more to come)
        assert [i["post"]["id"] for i in first["items"]] == [made[2]["id"], made[1]["id"]]
        new = await post_photo(star, "big news")
        assert [i["post"]["id"] for i in (await fan.get(page)).body["items"]] == [new["id"], made[2]["id"]]
    finally:
        for api in apis:
            await api.close()
