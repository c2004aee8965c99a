"""Hot reads served from Redis (storage/live_cache.py, api/response_cache.py) follow every write at once.

Each read below is repeated first, so that it is cached, and then a write by someone else (or by the reader) must
show on the very next read: reactions, comments, replies, reposts, saves, their undoing, deletions, a renamed
author, and a logged-out session.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from tests.api.test_search import post, word
from tests.conftest import Server
from tests.support import Api, assert_error, wait_until


async def cached(server: Server, *parts: object) -> bool:
    """Whether Redis holds this cache entry (the reads above really come from the cache)."""
    client = aioredis.from_url(server.env["REDIS_URL"])
    try:
        return bool(await client.exists(server.env["REDIS_PREFIX"] + ":".join(str(p) for p in parts)))
    finally:
        await client.aclose()


async def read_twice(api: Api, path: str) -> dict[str, Any]:
    first = await api.get(path)
    second = await api.get(path)
    assert first.status == second.status == 200, (first.body, second.body)
    assert first.body == second.body
    return dict(second.body)


async def test_a_cached_post_shows_every_reaction_comment_repost_and_save_at_once_then_its_deletion(
    server: Server, make_api: Any, register: Any
) -> None:
    alice, bob, carol, anon = make_api(), make_api("msgpack"), make_api(), make_api()
    for api in (alice, bob, carol):
        await register(api)
    made = await post(alice, f"Cache me {word()}")
    path = f"/api/v1/posts/{made['id']}"
    assert (await read_twice(anon, path))["counts"]["reactions"] == 0
    me = await read_twice(bob, path)
    assert me["my"] == {"reaction": None, "reposted": False, "saved": False}
    assert await cached(server, "live", "post", made["id"]) and await cached(
        server, "live", "post", made["id"], bob.user_id
    )

    assert (await bob.put(f"{path}/reaction", {"emoji": "🔥"})).status == 200
    assert (await anon.get(path)).body["reactions_summary"] == {"🔥": 1}
    assert (await bob.get(path)).body["my"]["reaction"] == "🔥"
    assert (await carol.get(path)).body["my"]["reaction"] is None
    assert (await bob.put(f"{path}/reaction", {"emoji": "👍"})).status == 200  # replaced
    assert (await anon.get(path)).body["reactions_summary"] == {"👍": 1}
    assert (await carol.post(f"{path}/comments", {"text": "hi"})).status == 201
    assert (await anon.get(path)).body["counts"]["comments"] == 1
    assert (await bob.put(f"{path}/repost")).status == 200
    assert (await bob.put(f"{path}/save")).status == 200
    mine = (await bob.get(path)).body
    assert mine["my"] == {"reaction": "👍", "reposted": True, "saved": True}
    assert mine["counts"] == {"reactions": 1, "comments": 1, "reposts": 1, "saves": 1}
    assert (await bob.delete(f"{path}/reaction")).status == 204
    assert (await bob.delete(f"{path}/save")).status == 200
    mine = (await bob.get(path)).body
    assert mine["my"] == {"reaction": None, "reposted": True, "saved": False} and mine["counts"]["reactions"] == 0

    assert (await alice.delete(path)).status == 204
    for reader in (anon, bob, carol):
        assert_error(await reader.get(path), 404, "not_found")


async def test_a_cached_comments_page_shows_new_comments_reactions_replies_renames_and_deletions_at_once(
    server: Server, make_api: Any, register: Any
) -> None:
    alice, bob, anon = make_api(), make_api(), make_api("msgpack")
    await register(alice)
    await register(bob)
    made = await post(alice, f"Talk about it {word()}")
    page = f"/api/v1/posts/{made['id']}/comments"
    assert (await read_twice(anon, page))["items"] == []
    assert (await read_twice(bob, page))["items"] == []
    assert await cached(server, "rc", "comments", made["id"], "-", 20, 0, "m")

    said = (await bob.post(page, {"text": "first"})).body
    (item,) = (await anon.get(page)).body["items"]
    assert item["id"] == said["id"] and item["author"]["username"] == bob.username
    await read_twice(bob, page)
    assert (await alice.put(f"/api/v1/comments/{said['id']}/reaction", {"emoji": "😂"})).status == 200
    assert (await anon.get(page)).body["items"][0]["counts"]["reactions"] == 1
    assert (await bob.put(f"/api/v1/comments/{said['id']}/reaction", {"emoji": "👍"})).status == 200
    assert (await bob.get(page)).body["items"][0]["my"] == {"reaction": "👍"}
    assert (await alice.post(f"/api/v1/comments/{said['id']}/replies", {"text": "reply"})).status == 201
    assert (await anon.get(page)).body["items"][0]["counts"]["replies"] == 1

    renamed = f"r{word(8)}"
    assert (await bob.patch("/api/v1/me", {"username": renamed})).status == 200
    assert (await anon.get(page)).body["items"][0]["author"]["username"] == renamed

    assert (await bob.delete(f"/api/v1/comments/{said['id']}")).status == 204
    assert (await anon.get(page)).body["items"] == []
    assert (await alice.delete(f"/api/v1/posts/{made['id']}")).status == 204
    assert_error(await anon.get(page), 404, "not_found")


async def test_a_logged_out_session_is_refused_by_cached_reads(make_api: Any, register: Any) -> None:
    alice = make_api()
    await register(alice)
    made = await post(alice, f"Mine {word()}")
    for path in (f"/api/v1/posts/{made['id']}", f"/api/v1/posts/{made['id']}/comments"):
        await read_twice(alice, path)
    token = alice.token
    assert (await alice.post("/api/v1/auth/logout")).status == 204
    alice.token = token
    for path in (f"/api/v1/posts/{made['id']}", f"/api/v1/posts/{made['id']}/comments"):
        assert_error(await alice.get(path), 401, "unauthenticated")


async def test_a_cached_feed_page_shows_new_posts_counts_reposts_knobs_unfollows_and_deletions_at_once(
    server: Server, make_api: Any, register: Any
) -> None:
    alice, bob, carol = make_api(), make_api(), make_api("msgpack")
    for api in (alice, bob, carol):
        await register(api)
    for friend in (bob, carol):
        assert (await alice.put(f"/api/v1/users/{friend.username}/follow")).status == 200
    carols = [await post(carol, f"Carol {i} {word()}") for i in range(3)]
    bobs = [await post(bob, f"Bob {i} {word()}") for i in range(3)]
    feed = "/api/v1/feed?limit=2"

    def ids(page: dict[str, Any]) -> list[str]:
        return [i["post"]["id"] for i in page["items"]]

    page = await read_twice(alice, feed)  # a page with more to come: cached
    assert ids(page) == [bobs[2]["id"], bobs[1]["id"]] and page["next_cursor"]
    client = aioredis.from_url(server.env["REDIS_URL"])
    try:
        pattern = server.env["REDIS_PREFIX"] + f"rc:feed:{{{alice.user_id}}}:*"
        assert [k async for k in client.scan_iter(match=pattern)], "the page is cached"
    finally:
        await client.aclose()

    newest = await post(bob, f"Bob new {word()}")

    async def fanned_out() -> bool:  # the fan-out worker adds it to alice's timeline moments after the 201
        return ids((await alice.get(feed)).body) == [newest["id"], bobs[2]["id"]]

    await wait_until(fanned_out, timeout=10)
    await read_twice(alice, feed)
    assert (await carol.put(f"/api/v1/posts/{newest['id']}/reaction", {"emoji": "🔥"})).status == 200
    assert (await alice.get(feed)).body["items"][0]["post"]["counts"]["reactions"] == 1
    assert (await alice.put(f"/api/v1/posts/{newest['id']}/save")).status == 200
    assert (await alice.get(feed)).body["items"][0]["post"]["my"]["saved"] is True

    assert (await carol.put(f"/api/v1/posts/{bobs[0]['id']}/repost")).status == 200

    async def repost_fanned_out() -> dict[str, Any] | None:
        first = (await alice.get(feed)).body["items"][0]
        return first if first["post"]["id"] == bobs[0]["id"] else None

    reposted = await wait_until(repost_fanned_out, timeout=10)
    assert reposted["reposted_by"]["username"] == carol.username
    await read_twice(alice, feed)
    assert (await alice.put("/api/v1/me/recommendations", {"hide_reposts": True})).status == 200
    assert ids((await alice.get(feed)).body) == [newest["id"], bobs[2]["id"]]
    assert (await alice.put("/api/v1/me/recommendations", {"hide_reposts": False})).status == 200
    assert (await carol.delete(f"/api/v1/posts/{bobs[0]['id']}/repost")).status == 200
    assert ids(await read_twice(alice, feed)) == [newest["id"], bobs[2]["id"]]

    assert (await bob.delete(f"/api/v1/posts/{newest['id']}")).status == 204
    assert ids((await alice.get(feed)).body) == [bobs[2]["id"], bobs[1]["id"]]
    await read_twice(alice, feed)
    assert (await alice.delete(f"/api/v1/users/{bob.username}/follow")).status == 200
    assert ids((await alice.get(feed)).body) == [carols[2]["id"], carols[1]["id"]]
    await read_twice(alice, feed)
    renamed = f"c{word(8)}"
    assert (await carol.patch("/api/v1/me", {"username": renamed})).status == 200
    assert (await alice.get(feed)).body["items"][0]["post"]["author"]["username"] == renamed


async def test_a_comments_page_refuses_bad_page_parameters_naming_them(make_api: Any, register: Any) -> None:
    alice = make_api()
    await register(alice)
    made = await post(alice, f"Params {word()}")
    page = f"/api/v1/posts/{made['id']}/comments"
    for params, field in (
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"cursor": "nope"}, "cursor"),
        ({"cursor": ""}, "cursor"),
        ({"cursor": "1-" + "9" * 30}, "cursor"),
    ):
        err = assert_error(await alice.get(page, params=params), 422, "validation_failed")
        assert list(err["details"]["fields"]) == [field], err
    assert (await alice.get(page, params={"limit": 100, "cursor": "0-0"})).body == {"items": [], "next_cursor": None}


async def test_an_authors_new_post_is_in_their_own_cached_feed_at_once(make_api: Any, register: Any) -> None:
    alice = make_api()
    await register(alice)
    older = [await post(alice, f"Older {i} {word()}") for i in range(3)]
    feed = "/api/v1/feed?limit=2"
    assert [i["post"]["id"] for i in (await read_twice(alice, feed))["items"]] == [older[2]["id"], older[1]["id"]]
    for n in range(3):  # no waiting for the fan-out worker: the author's own timeline takes it with the 201
        made = await post(alice, f"New {n} {word()}")
        assert (await alice.get(feed)).body["items"][0]["post"]["id"] == made["id"]


async def test_a_kept_explore_first_page_is_served_whole_and_shows_new_counts_and_renames_at_once(
    server: Server, make_api: Any, register: Any
) -> None:
    alice, bob, carol, dave = make_api(), make_api(), make_api(), make_api()
    for api in (alice, bob, carol, dave):
        await register(api)
    assert (await alice.put(f"/api/v1/users/{bob.username}/follow")).status == 200
    for i in range(2):
        await post(carol, f"Another one {i} {word()}")
    target = await post(carol, f"Worth a look {word()}")
    assert (await bob.put(f"/api/v1/posts/{target['id']}/reaction", {"emoji": "🔥"})).status == 200
    user_id = int((await alice.get("/api/v1/me")).body["id"])
    path = "/api/v1/explore?limit=100"

    async def snapshot() -> str:
        reply = await alice.get("/api/v1/explore", params={"limit": 1})
        assert reply.status == 200 and reply.body["next_cursor"], reply.body
        return str(reply.body["next_cursor"])[1:].split(".")[0]  # r<snapshot>.<offset>

    async def kept_page() -> dict[str, Any] | None:
        """A first page read twice from one kept ranking, and cached (a refresh may re-rank meanwhile: again)."""
        before = await snapshot()
        first, second = await alice.get(path), await alice.get(path)
        assert first.status == second.status == 200, (first.body, second.body)
        same = first.body == second.body and await snapshot() == before
        return dict(second.body) if same and await cached(server, "rc", "explore", user_id, before, 100, "j") else None

    page = await wait_until(kept_page, timeout=15, interval=0.5)
    item = {i["post"]["id"]: i for i in page["items"]}[target["id"]]
    assert item["post"]["counts"]["reactions"] == 1
    assert next(r for r in item["reasons"] if r["type"] == "engaged_by_following")["users"][0]["id"] == bob.user_id
    as_msgpack = await alice.get(path, headers={"Accept": "application/msgpack"})
    assert as_msgpack.headers["content-type"].startswith("application/msgpack") and as_msgpack.body == page

    # Someone I do not follow reacts (the ranking stays): the very next first page shows the count.
    assert (await dave.put(f"/api/v1/posts/{target['id']}/reaction", {"emoji": "👀"})).status == 200
    item = {i["post"]["id"]: i for i in (await alice.get(path)).body["items"]}[target["id"]]
    assert item["post"]["counts"]["reactions"] == 2 and item["post"]["reactions_summary"] == {"🔥": 1, "👀": 1}
    # The person a reason names renames themselves: the very next first page names them so.
    renamed = f"r{word(8)}"
    assert (await bob.patch("/api/v1/me", {"username": renamed})).status == 200
    item = {i["post"]["id"]: i for i in (await alice.get(path)).body["items"]}[target["id"]]
    assert next(r for r in item["reasons"] if r["type"] == "engaged_by_following")["users"][0]["username"] == renamed
    # My own reaction takes the post out of my next first page (a new ranking).
    assert (await alice.put(f"/api/v1/posts/{target['id']}/reaction", {"emoji": "👍"})).status == 200
    assert target["id"] not in {i["post"]["id"] for i in (await alice.get(path)).body["items"]}


async def test_kept_suggestions_are_served_whole_and_show_renames_at_once(
    server: Server, make_api: Any, register: Any
) -> None:
    alice, bob, carol = make_api(), make_api(), make_api()
    for api in (alice, bob, carol):
        await register(api)
    assert (await alice.put(f"/api/v1/users/{bob.username}/follow")).status == 200
    assert (await bob.put(f"/api/v1/users/{carol.username}/follow")).status == 200
    user_id = int((await alice.get("/api/v1/me")).body["id"])
    path = "/api/v1/suggestions/users?limit=20"
    client = aioredis.from_url(server.env["REDIS_URL"])

    def carol_in(page: dict[str, Any]) -> dict[str, Any]:
        return next(i for i in page["items"] if i["user"]["id"] == carol.user_id)

    async def entries() -> set[bytes]:
        pattern = f"{server.env['REDIS_PREFIX']}rc:suggestions:{user_id}:20:*:j"
        return {key async for key in client.scan_iter(match=pattern)}

    async def cached_page() -> dict[str, Any] | None:
        """Read twice from one kept list, cached before (a write less than 2 s before a list counts as after it:
        until then each read makes a new list, cached under its own key)."""
        before = await entries()
        first, second = await alice.get(path), await alice.get(path)
        assert first.status == second.status == 200, (first.body, second.body)
        return dict(second.body) if before and first.body == second.body and await entries() == before else None

    try:
        page = await wait_until(cached_page, timeout=15, interval=0.5)
        fof = next(r for r in carol_in(page)["reasons"] if r["type"] == "followed_by_following")
        assert [u["id"] for u in fof["users"]] == [bob.user_id]
        assert carol_in(page)["user"]["followed_by_me"] is False
        as_msgpack = await alice.get(path, headers={"Accept": "application/msgpack"})
        assert as_msgpack.headers["content-type"].startswith("application/msgpack") and as_msgpack.body == page

        # The suggested person, and the person a reason names, rename themselves: shown at once.
        renamed = f"r{word(8)}"
        assert (await carol.patch("/api/v1/me", {"username": renamed})).status == 200
        assert carol_in((await alice.get(path)).body)["user"]["username"] == renamed
        renamed = f"r{word(8)}"
        assert (await bob.patch("/api/v1/me", {"name": renamed})).status == 200
        fof = next(r for r in carol_in((await alice.get(path)).body)["reasons"] if r["type"] == "followed_by_following")
        assert fof["users"][0]["name"] == renamed
        # Carol follows me: the list is made anew and says so.
        assert (await carol.put(f"/api/v1/users/{alice.username}/follow")).status == 200
        item = carol_in((await alice.get(path)).body)
        assert item["user"]["follows_me"] is True and any(r["type"] == "follows_you" for r in item["reasons"])
    finally:
        await client.aclose()
