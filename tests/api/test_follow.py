"""Profiles and the follow graph over real HTTP and WebSocket: B follows A and A's socket hears of it; lists and
flags as the viewer, a stranger and anonymous see them; unfollow; counters exact under 50 concurrent follows and
equal to COUNT(*) of the rows; every refusal changes nothing."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import asyncpg

from tests.asyncapi_frames import check_frame
from tests.conftest import Server
from tests.support import Api, WsClient, assert_error, unique

USERS = "/api/v1/users"
SUMMARY_KEYS = {"id", "username", "name", "avatar"}
FLAG_KEYS = {"followed_by_me", "follows_me"}
PROFILE_KEYS = SUMMARY_KEYS | {"bio", "followers_count", "following_count", "posts_count", "created_at"}


async def graph_rows(db: asyncpg.Pool, user_id: str) -> dict[str, Any]:
    """What the database holds about one user's follows: counters, the rows they count, notifications."""
    row = await db.fetchrow(
        """SELECT u.followers_count, u.following_count,
                  (SELECT count(*) FROM follows WHERE followee_id = u.id) AS followers_rows,
                  (SELECT count(*) FROM follows WHERE follower_id = u.id) AS following_rows,
                  (SELECT count(*) FROM notifications WHERE owner_id = u.id) AS notifications,
                  (SELECT count(*) FROM outbox WHERE $1 = ANY(recipients) AND type = 'notification') AS events
           FROM users u WHERE u.id = $1""",
        int(user_id),
    )
    assert row is not None
    return dict(row)


async def seed_accounts(api: Api, register: Any, db: asyncpg.Pool, make_api: Callable[..., Api], n: int) -> list[Api]:
    """``n`` logged-in clients: one account through the real signup flow, the others seeded with its password
    hash and logged in over HTTP (the signup flow itself is covered by tests/api/test_auth_story.py)."""
    template = await register(api)
    password_hash = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", int(template["user"]["id"]))
    names = [unique("fan") for _ in range(n)]
    base = random.randrange(1, 10**6) << 22  # ids minted "in early 2024": no process of this run mints there
    await db.executemany(
        """INSERT INTO users (id, username, email, name, birthday, password_hash)
           VALUES ($1, $2, $3, $4, '2000-01-31', $5)""",
        [(base + i, name, f"{name}@example.com", name.title(), password_hash) for i, name in enumerate(names)],
    )
    gate = asyncio.Semaphore(8)

    async def login(name: str) -> Api:
        client = make_api()
        async with gate:
            reply = await client.post("/api/v1/auth/login", {"login": name, "password": template["password"]})
        assert reply.status == 200, reply.body
        client.token = reply.body["tokens"]["access_token"]
        return client

    return list(await asyncio.gather(*(login(name) for name in names)))


async def test_b_follows_a_and_a_hears_of_it_live_lists_and_flags_for_viewer_stranger_anonymous(
    server: Server, make_api: Callable[..., Api], register: Any, db: asyncpg.Pool
) -> None:
    a_api, b_api, c_api, anon = make_api(), make_api("msgpack"), make_api(), make_api()
    a, b = await register(a_api), await register(b_api)
    await register(c_api)
    a_id, b_id = a["user"]["id"], b["user"]["id"]
    assert a_api.token is not None
    ws = await WsClient.connect(server.base_url, a_api.token)
    try:
        reply = await b_api.put(f"{USERS}/{a['username'].upper()}/follow")  # usernames in any case
        assert (reply.status, reply.body) == (200, {"following": True})
        frame = await ws.next_of("notification")
        check_frame(frame)
        note = frame["data"]
        assert note["type"] == "follow" and note["read"] is False and frame["id"]
        assert note["actor"] == {"id": b_id, "username": b["username"], "name": b["user"]["name"], "avatar": None}
        assert await db.fetchval("SELECT type FROM notifications WHERE id = $1", int(note["id"])) == "follow"

        # Following again: 200, nothing counted twice, nobody notified twice.
        reply = await b_api.put(f"{USERS}/{a['username']}/follow")
        assert (reply.status, reply.body) == (200, {"following": True})
        assert [f for f in await ws.quiet(0.5) if f["type"] == "notification"] == []
    finally:
        await ws.close()
    assert await graph_rows(db, a_id) == {
        "followers_count": 1,
        "following_count": 0,
        "followers_rows": 1,
        "following_rows": 0,
        "notifications": 1,
        "events": 1,
    }

    # The profile: counts for all, the flags only with a token.
    public = (await anon.get(f"{USERS}/{a['username']}")).body
    assert set(public) == PROFILE_KEYS and public["followers_count"] == 1 and public["id"] == a_id
    as_b = (await b_api.get(f"{USERS}/{a['username']}")).body
    assert as_b == {**public, "followed_by_me": True, "follows_me": False}
    as_a = (await a_api.get(f"{USERS}/{b['username']}")).body
    assert (as_a["followed_by_me"], as_a["follows_me"], as_a["following_count"]) == (False, True, 1)
    as_c = (await c_api.get(f"{USERS}/{a['username']}")).body
    assert (as_c["followed_by_me"], as_c["follows_me"]) == (False, False)

    # The lists, for each reader.
    followers = (await anon.get(f"{USERS}/{a['username']}/followers")).body
    assert followers == {"items": [{**note["actor"]}], "next_cursor": None}
    assert set(followers["items"][0]) == SUMMARY_KEYS
    mine = (await a_api.get(f"{USERS}/{a['username']}/followers")).body["items"]
    assert [(u["id"], u["followed_by_me"], u["follows_me"]) for u in mine] == [(b_id, False, True)]
    stranger = (await c_api.get(f"{USERS}/{a['username']}/followers")).body["items"]
    assert [(u["id"], u["followed_by_me"], u["follows_me"]) for u in stranger] == [(b_id, False, False)]
    following = (await b_api.get(f"{USERS}/{b['username']}/following")).body["items"]
    assert [(u["id"], u["followed_by_me"], u["follows_me"]) for u in following] == [(a_id, True, False)]
    assert (await anon.get(f"{USERS}/{b['username']}/followers")).body == {"items": [], "next_cursor": None}
    past_the_end = {"cursor": "999999999999999999-9999999999999999999"}  # clamped: the start of the list
    assert (await anon.get(f"{USERS}/{a['username']}/followers", params=past_the_end)).body == followers

    # Unfollow removes it from both lists and both counters; a second unfollow is a no-op.
    for _ in range(2):
        reply = await b_api.delete(f"{USERS}/{a['username']}/follow")
        assert (reply.status, reply.body) == (200, {"following": False})
    assert (await anon.get(f"{USERS}/{a['username']}/followers")).body["items"] == []
    assert (await anon.get(f"{USERS}/{b['username']}/following")).body["items"] == []
    assert (await anon.get(f"{USERS}/{a['username']}")).body["followers_count"] == 0
    assert (await anon.get(f"{USERS}/{b['username']}")).body["following_count"] == 0

    # A new follow later is a new event, stored once.
    assert (await b_api.put(f"{USERS}/{a['username']}/follow")).body == {"following": True}
    rows = await graph_rows(db, a_id)
    assert (rows["followers_count"], rows["followers_rows"], rows["notifications"], rows["events"]) == (1, 1, 2, 2)


async def test_refusals_answer_4xx_and_change_nothing(
    make_api: Callable[..., Api], register: Any, db: asyncpg.Pool
) -> None:
    api, anon = make_api(), make_api()
    me = await register(api)
    other = await register(make_api())
    name = me["username"]
    before_me, before_other = await graph_rows(db, me["user"]["id"]), await graph_rows(db, other["user"]["id"])

    err = assert_error(await api.put(f"{USERS}/{name.upper()}/follow"), 422, "validation_failed")
    assert "username" in err["details"]["fields"]
    assert_error(await api.delete(f"{USERS}/{name}/follow"), 422, "validation_failed")
    for method in (api.put, api.delete):
        assert_error(await method(f"{USERS}/{unique('nobody')}/follow"), 404, "not_found")
    assert_error(await anon.put(f"{USERS}/{other['username']}/follow"), 401, "unauthenticated")
    assert_error(await anon.get(f"{USERS}/{unique('nobody')}"), 404, "not_found")
    assert_error(await anon.get(f"{USERS}/{unique('nobody')}/followers"), 404, "not_found")
    assert_error(await anon.get(f"{USERS}/no!/followers"), 422, "validation_failed")
    for query in (
        {"limit": 0},
        {"limit": 101},
        {"limit": "x"},
        {"cursor": "!!"},
        {"cursor": "12:34"},
        {"cursor": "1-2-3"},
    ):
        for path in ("followers", "following"):
            err = assert_error(await anon.get(f"{USERS}/{name}/{path}", params=query), 422, "validation_failed")
            assert set(err["details"]["fields"]) == set(query), err

    assert await graph_rows(db, me["user"]["id"]) == before_me
    assert await graph_rows(db, other["user"]["id"]) == before_other


async def test_50_concurrent_follows_count_exactly_and_pages_are_stable_under_inserts(
    make_api: Callable[..., Api], register: Any, db: asyncpg.Pool
) -> None:
    star_api, api = make_api(), make_api()
    star = await register(star_api)
    fans = await seed_accounts(api, register, db, make_api, 51)
    late = fans.pop()
    path = f"{USERS}/{star['username']}/follow"

    replies = await asyncio.gather(*(fan.put(path) for fan in fans))
    assert [(r.status, r.body) for r in replies] == [(200, {"following": True})] * 50
    rows = await graph_rows(db, star["user"]["id"])
    assert (rows["followers_count"], rows["followers_rows"], rows["notifications"], rows["events"]) == (50, 50, 50, 50)
    assert (await api.get(f"{USERS}/{star['username']}")).body["followers_count"] == 50

    # 50 concurrent repeats of one follow: one follow, one notification.
    target = await register(make_api())
    replies = await asyncio.gather(*(fans[0].put(f"{USERS}/{target['username']}/follow") for _ in range(50)))
    assert {(r.status, r.body["following"]) for r in replies} == {(200, True)}
    rows = await graph_rows(db, target["user"]["id"])
    assert (rows["followers_count"], rows["followers_rows"], rows["notifications"]) == (1, 1, 1)
    fan0 = (await api.get("/api/v1/me", headers={"Authorization": f"Bearer {fans[0].token}"})).body
    assert fan0["following_count"] == 2 == (await graph_rows(db, fan0["id"]))["following_rows"]

    # Pages of 20, newest first; a follow arriving between pages shifts nothing already paged.
    seen: list[str] = []
    cursor = None
    for page in range(3):
        params: dict[str, Any] = {"limit": 20, **({"cursor": cursor} if cursor else {})}
        body = (await star_api.get(f"{USERS}/{star['username']}/followers", params=params)).body
        seen += [u["id"] for u in body["items"]]
        assert all(u["follows_me"] is True and u["followed_by_me"] is False for u in body["items"])
        cursor = body["next_cursor"]
        if page == 0:
            assert (await late.put(path)).status == 200
    assert cursor is None and len(seen) == 50 == len(set(seen))
    newest_first = await db.fetch(
        "SELECT follower_id FROM follows WHERE followee_id = $1 ORDER BY created_at DESC, follower_id DESC",
        int(star["user"]["id"]),
    )
    assert seen == [str(r["follower_id"]) for r in newest_first][1:]  # all but the late one, in order
