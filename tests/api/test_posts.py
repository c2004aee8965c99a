"""Posts over real HTTP and WebSocket: create from your own uploads with mentions and hashtags (a mentioned
user's socket hears of it), read it anonymously and in every list, delete it and see it leave every list and
count; Idempotency-Key retries; every bad input refused with its field and nothing half-written."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx

from tests import media_samples as samples
from tests.asyncapi_frames import check_frame
from tests.conftest import Server
from tests.support import Api, WsClient, assert_error

POSTS = "/api/v1/posts"


async def upload(api: Api, ctype: str, data: bytes, purpose: str = "post") -> str:
    made = await api.post("/api/v1/media", {"purpose": purpose, "content_type": ctype, "size": len(data)})
    assert made.status == 201, made.body
    async with httpx.AsyncClient(timeout=30) as http:
        sent = await http.put(made.body["upload"]["url"], content=data, headers=made.body["upload"]["headers"])
        assert sent.status_code == 204
    done = await api.post(f"/api/v1/media/{made.body['media_id']}/complete")
    assert done.status == 200, done.body
    return str(done.body["id"])


async def test_a_photo_post_with_mentions_and_hashtags_is_listed_everywhere_then_gone_everywhere(
    server: Server, make_api: Any, register: Any, db: asyncpg.Pool
) -> None:
    alice, bob, anon = make_api(), make_api("msgpack"), make_api()
    a = await register(alice)
    b = await register(bob)
    assert bob.token
    ws = await WsClient.connect(server.base_url, bob.token)
    await ws.gateway()
    media = [
        await upload(alice, "image/png", samples.png()),
        await upload(alice, "image/jpeg", samples.jpeg_with_gps()),
    ]
    caption = f"Sunset with @{b['username'].upper()} and x@gmail.com @nobody_here_x #Beach #sunset #beach"
    made = await alice.post(POSTS, {"type": "photo", "caption": caption, "media_ids": media})
    assert made.status == 201, made.body
    post = made.body
    assert [m["id"] for m in post["media"]] == media and all("signature" not in m["url"] for m in post["media"])
    assert post["mentions"] == [b["username"]] and post["hashtags"] == ["beach", "sunset"]
    assert post["counts"] == {"reactions": 0, "comments": 0, "reposts": 0, "saves": 0}
    assert post["author"]["username"] == a["username"] and post["caption"] == caption

    note = await ws.next_of("notification")
    check_frame(note)
    assert note["data"]["type"] == "mention_post" and note["data"]["post"]["id"] == post["id"]
    assert note["data"]["actor"]["username"] == a["username"]

    pid = post["id"]
    public = await anon.get(f"{POSTS}/{pid}")
    assert (
        public.status == 200
        and public.body["id"] == pid
        and public.body["my"]
        == {
            "reaction": None,
            "reposted": False,
            "saved": False,
        }
    )
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(post["media"][0]["url"])).status_code == 200  # attached: public now
    assert [p["id"] for p in (await anon.get(f"/api/v1/users/{a['username']}/posts")).body["items"]] == [pid]
    assert (await anon.get("/api/v1/hashtags/Beach")).body == {"tag": "beach", "posts_count": 1}
    assert [p["id"] for p in (await anon.get("/api/v1/hashtags/%23sunset/posts")).body["items"]] == [pid]
    assert [p["id"] for p in (await bob.get("/api/v1/me/mentions")).body["items"]] == [pid]
    assert (await anon.get(f"/api/v1/users/{a['username']}")).body["posts_count"] == 1

    mine = await alice.get(f"{POSTS}/{pid}")
    assert mine.status == 200 and mine.body["my"] == {"reaction": None, "reposted": False, "saved": False}
    assert_error(await alice.get(f"{POSTS}/{pid}", headers={"Authorization": "Basic abc"}), 401, "unauthenticated")
    assert_error(await bob.delete(f"{POSTS}/{pid}"), 403, "forbidden")
    ended = make_api()
    ended.token = (await ended.post("/api/v1/auth/login", {"login": b["username"], "password": b["password"]})).body[
        "tokens"
    ]["access_token"]
    assert (await ended.post("/api/v1/auth/logout")).status == 204
    err = assert_error(await ended.get(f"{POSTS}/{pid}"), 401, "unauthenticated")  # the session is checked
    assert err["details"]["reason"] == "session_revoked"
    assert (await alice.delete(f"{POSTS}/{pid}")).status == 204
    assert_error(await anon.get(f"{POSTS}/{pid}"), 404, "not_found")
    assert_error(await alice.delete(f"{POSTS}/{pid}"), 404, "not_found")
    assert (await anon.get(f"/api/v1/users/{a['username']}/posts")).body["items"] == []
    assert (await anon.get("/api/v1/hashtags/beach")).body["posts_count"] == 0
    assert (await anon.get("/api/v1/hashtags/beach/posts")).body["items"] == []
    assert (await bob.get("/api/v1/me/mentions")).body["items"] == []
    assert (await anon.get(f"/api/v1/users/{a['username']}")).body["posts_count"] == 0
    assert await db.fetchval("SELECT count(*) FROM notifications WHERE post_id = $1", int(pid)) == 0
    await ws.close()


async def test_an_idempotency_key_retried_at_once_and_later_makes_one_post(
    make_api: Any, register: Any, db: asyncpg.Pool
) -> None:
    alice = make_api()
    me = await register(alice)
    media = await upload(alice, "video/mp4", samples.mp4())
    body = {"type": "reel", "caption": "once", "media_ids": [media]}
    key = {"Idempotency-Key": "reel-1"}
    replies = await asyncio.gather(*(alice.post(POSTS, body, headers=key) for _ in range(5)))
    assert {r.status for r in replies} == {201} and len({r.body["id"] for r in replies}) == 1
    later = await alice.post(POSTS, body, headers=key)
    assert later.status == 201 and later.body["id"] == replies[0].body["id"]
    assert_error(await alice.post(POSTS, {**body, "caption": "twice"}, headers=key), 422, "idempotency_key_reused")
    count = await db.fetchval("SELECT count(*) FROM posts WHERE author_id = $1", int(me["user"]["id"]))
    assert count == 1


async def test_every_bad_post_is_refused_with_its_field_and_nothing_is_written(
    make_api: Any, register: Any, db: asyncpg.Pool
) -> None:
    alice, bob = make_api(), make_api()
    me = await register(alice)
    await register(bob)
    image = await upload(alice, "image/png", samples.png())
    video = await upload(alice, "video/mp4", samples.mp4())
    chat_image = await upload(alice, "image/png", samples.png(), purpose="chat")
    bobs = await upload(bob, "image/png", samples.png())
    pending = (await alice.post("/api/v1/media", {"purpose": "post", "content_type": "image/png", "size": 9})).body
    cases = [
        ({"type": "video", "media_ids": [video, image]}, "validation_failed", "media_ids"),
        ({"type": "photo", "media_ids": [video]}, "invalid_media", "media_ids"),
        ({"type": "reel", "media_ids": [image]}, "invalid_media", "media_ids"),
        ({"type": "photo", "media_ids": [bobs]}, "invalid_media", "media_ids"),
        ({"type": "photo", "media_ids": [chat_image]}, "invalid_media", "media_ids"),
        ({"type": "photo", "media_ids": [pending["media_id"]]}, "media_not_ready", "media_ids"),
        ({"type": "photo", "media_ids": ["999999999999"]}, "invalid_media", "media_ids"),
        ({"type": "photo", "media_ids": [image, image]}, "validation_failed", "media_ids"),
        ({"type": "photo", "media_ids": [image] * 11}, "validation_failed", "media_ids"),
        ({"type": "photo", "media_ids": []}, "validation_failed", "media_ids"),
        ({"type": "photo", "caption": "x" * 2201, "media_ids": [image]}, "validation_failed", "caption"),
        ({"type": "story", "media_ids": [image]}, "validation_failed", "type"),
        ({"type": "photo", "media_ids": [image], "author_id": "1"}, "validation_failed", "author_id"),
    ]
    for body, code, field in cases:
        err = assert_error(await alice.post(POSTS, body), 422, code)
        assert field in err["details"].get("fields", {}), (body, err)
    assert await db.fetchval("SELECT count(*) FROM posts WHERE author_id = $1", int(me["user"]["id"])) == 0
    assert (await db.fetchval("SELECT posts_count FROM users WHERE id = $1", int(me["user"]["id"]))) == 0
    first = await alice.post(POSTS, {"type": "photo", "media_ids": [image]})
    assert first.status == 201
    again = await alice.post(POSTS, {"type": "photo", "media_ids": [image]})
    assert_error(again, 422, "invalid_media")  # an upload belongs to one post
    assert_error(await alice.get(f"{POSTS}/123456789"), 404, "not_found")
    assert_error(await make_api().post(POSTS, {"type": "photo", "media_ids": [image]}), 401, "unauthenticated")
    assert_error(await alice.get("/api/v1/hashtags/%20"), 404, "not_found")


async def test_a_post_shows_its_authors_new_name_and_avatar_at_once_after_a_profile_edit(
    make_api: Any, register: Any
) -> None:
    """Post reads keep the fixed parts of a post per process (api/reads/post_cache.py): a profile edit must reach
    every process at once, whichever worker answers."""
    alice, reader = make_api(), make_api()
    await register(alice)
    await register(reader)
    media = await upload(alice, "image/png", samples.png())
    post = (await alice.post(POSTS, {"type": "photo", "caption": "cache me", "media_ids": [media]})).body
    for _ in range(6):  # both workers hold it now
        assert (await reader.get(f"{POSTS}/{post['id']}")).body["author"]["name"] == post["author"]["name"]
    assert (await alice.patch("/api/v1/me", {"name": "Alice Renamed"})).status == 200
    avatar = await upload(alice, "image/png", samples.png(), purpose="avatar")
    assert (await alice.put("/api/v1/me/avatar", {"media_id": avatar})).status == 200
    for _ in range(6):
        author = (await reader.get(f"{POSTS}/{post['id']}")).body["author"]
        assert author["name"] == "Alice Renamed" and author["avatar"] is not None and avatar in author["avatar"]
    # Counters and flags are never cached: a reaction shows at once too.
    assert (await reader.put(f"{POSTS}/{post['id']}/reaction", {"emoji": "🔥"})).status == 200
    again = (await reader.get(f"{POSTS}/{post['id']}")).body
    assert again["counts"]["reactions"] == 1 and again["my"]["reaction"] == "🔥"
    assert (await alice.delete(f"{POSTS}/{post['id']}")).status == 204
    for _ in range(4):
        assert (await reader.get(f"{POSTS}/{post['id']}")).status == 404
