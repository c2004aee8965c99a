"""Reactions, comments, replies, reposts and saves over real HTTP and WebSocket: the seed's post/comment story
with three users and their notifications, exact counters under 100 concurrent reactions and react/replace/undo
storms, live counts for subscribers only (coalesced), a deleted post leaving every list, and every bad input."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg

from tests import media_samples as samples
from tests.api.test_follow import seed_accounts
from tests.api.test_posts import upload
from tests.asyncapi_frames import check_frame
from tests.conftest import Server
from tests.support import Api, WsClient, assert_error, wait_until

POSTS = "/api/v1/posts"


async def new_post(api: Api, caption: str = "") -> dict[str, Any]:
    media = await upload(api, "image/png", samples.png())
    made = await api.post(POSTS, {"type": "photo", "caption": caption, "media_ids": [media]})
    assert made.status == 201, made.body
    return dict(made.body)


async def notification(ws: WsClient, type_: str) -> dict[str, Any]:
    frame = await ws.next_of("notification")
    check_frame(frame)
    assert frame["data"]["type"] == type_, frame
    return dict(frame["data"])


async def test_the_seed_post_and_comment_story_with_three_users(
    server: Server, make_api: Any, register: Any, db: asyncpg.Pool
) -> None:
    one, two, three = make_api(), make_api("msgpack"), make_api()
    u1, u2, u3 = await register(one), await register(two), await register(three)
    sockets = [await WsClient.connect(server.base_url, api.token) for api in (one, two, three)]  # type: ignore[arg-type]
    ws1, ws2, ws3 = sockets
    post = await new_post(one, "This is No.1 #trending")
    pid = post["id"]

    # 3-6. Reactions, each notifying the author; a removed one leaves the list and its notification goes.
    assert (await two.put(f"{POSTS}/{pid}/reaction", {"emoji": "🤔"})).status == 200
    note = await notification(ws1, "reaction_post")
    assert note["actor"]["username"] == u2["username"] and note["emoji"] == "🤔" and note["post"]["id"] == pid
    reply = await three.put(f"{POSTS}/{pid}/reaction", {"emoji": "😀"})
    assert reply.body["counts"]["reactions"] == 2 and reply.body["reactions_summary"] == {"🤔": 1, "😀": 1}
    assert reply.body["my"]["reaction"] == "😀"
    await notification(ws1, "reaction_post")
    reactors = (await one.get(f"{POSTS}/{pid}/reactions")).body["items"]
    assert {(r["user"]["username"], r["emoji"]) for r in reactors} == {(u2["username"], "🤔"), (u3["username"], "😀")}
    assert (await three.delete(f"{POSTS}/{pid}/reaction")).status == 204
    reactors = (await one.get(f"{POSTS}/{pid}/reactions")).body["items"]
    assert [r["user"]["username"] for r in reactors] == [u2["username"]]
    assert (await one.get(f"{POSTS}/{pid}/reactions", params={"emoji": "😀"})).body["items"] == []

    # 7-11. Comments (one with an image), each notifying the author; a deleted one leaves the list.
    image = await upload(two, "image/png", samples.png(), purpose="comment")
    c2 = await two.post(f"{POSTS}/{pid}/comments", {"text": "nice!", "media_id": image})
    assert c2.status == 201 and c2.body["media"]["id"] == image
    note = await notification(ws1, "comment_post")
    assert note["comment"]["id"] == c2.body["id"] and note["actor"]["username"] == u2["username"]
    c3 = await three.post(f"{POSTS}/{pid}/comments", {"text": "wow"})
    await notification(ws1, "comment_post")
    listed = (await one.get(f"{POSTS}/{pid}/comments")).body["items"]
    assert [c["id"] for c in listed] == [c3.body["id"], c2.body["id"]]
    assert (await three.delete(f"/api/v1/comments/{c3.body['id']}")).status == 204
    assert [c["id"] for c in (await one.get(f"{POSTS}/{pid}/comments")).body["items"]] == [c2.body["id"]]
    assert (await one.get(f"/api/v1/comments/{c2.body['id']}")).body["text"] == "nice!"

    # 12-14. Replies notify the comment's author; a deleted reply leaves the list.
    r1 = await one.post(f"/api/v1/comments/{c2.body['id']}/replies", {"text": "thanks"})
    assert r1.status == 201 and r1.body["parent_id"] == c2.body["id"]
    assert (await notification(ws2, "reply_comment"))["actor"]["username"] == u1["username"]
    r3 = await three.post(f"/api/v1/comments/{c2.body['id']}/replies", {"text": "+1"})
    await notification(ws2, "reply_comment")
    replies = (await two.get(f"/api/v1/comments/{c2.body['id']}/replies")).body["items"]
    assert {r["id"] for r in replies} == {r1.body["id"], r3.body["id"]}
    assert (await three.delete(f"/api/v1/comments/{r3.body['id']}")).status == 204
    assert [r["id"] for r in (await two.get(f"/api/v1/comments/{c2.body['id']}/replies")).body["items"]] == [
        r1.body["id"]
    ]
    assert (await one.get(f"/api/v1/comments/{c2.body['id']}")).body["counts"]["replies"] == 1

    # 15. Reactions on a reply notify its author.
    assert (await two.put(f"/api/v1/comments/{r1.body['id']}/reaction", {"emoji": "😆"})).status == 200
    assert (await notification(ws1, "reaction_comment"))["emoji"] == "😆"
    assert (await three.put(f"/api/v1/comments/{r1.body['id']}/reaction", {"emoji": "😂"})).status == 200
    await notification(ws1, "reaction_comment")
    assert (await three.delete(f"/api/v1/comments/{r1.body['id']}/reaction")).status == 204
    reactors = (await one.get(f"/api/v1/comments/{r1.body['id']}/reactions")).body["items"]
    assert [(r["user"]["username"], r["emoji"]) for r in reactors] == [(u2["username"], "😆")]

    # 16. A mention in a post notifies the mentioned user.
    post2 = await new_post(one, f"hey @{u2['username']}")
    assert (await notification(ws2, "mention_post"))["post"]["id"] == post2["id"]
    assert (await two.get(f"{POSTS}/{post2['id']}")).body["id"] == post2["id"]

    # 17-18. A repost notifies the author and lists on the reposter's profile; save and unsave.
    post3 = await new_post(three)
    assert (await two.put(f"{POSTS}/{post3['id']}/repost")).body == {"reposted": True}
    assert (await two.put(f"{POSTS}/{post3['id']}/repost")).body == {"reposted": True}  # idempotent
    assert (await notification(ws3, "repost"))["actor"]["username"] == u2["username"]
    profile_posts = (await one.get(f"/api/v1/users/{u2['username']}/posts")).body["items"]
    assert [p["id"] for p in profile_posts] == [post3["id"]]
    assert (await one.put(f"{POSTS}/{post3['id']}/save")).body == {"saved": True}
    assert [p["id"] for p in (await one.get("/api/v1/me/saved")).body["items"]] == [post3["id"]]
    assert (await one.delete(f"{POSTS}/{post3['id']}/save")).body == {"saved": False}
    assert (await one.get("/api/v1/me/saved")).body["items"] == []
    seen = await one.get(f"{POSTS}/{post3['id']}")
    assert seen.body["counts"] == {"reactions": 0, "comments": 0, "reposts": 1, "saves": 0}
    assert (await two.get(f"{POSTS}/{post3['id']}")).body["my"] == {"reaction": None, "reposted": True, "saved": False}
    assert [p["id"] for p in (await two.get("/api/v1/me/reacted")).body["items"]] == [pid]
    assert [p["id"] for p in (await two.get("/api/v1/me/commented")).body["items"]] == [pid]

    # The inbox shows each notification with its post and comment, as the socket did.
    inbox = (await two.get("/api/v1/me/notifications", params={"types": "reply_comment"})).body["items"]
    assert [n["comment"]["id"] for n in inbox] == [r1.body["id"]] and inbox[0]["post"]["id"] == pid

    # Nobody was notified of their own actions, and no notification was sent twice.
    kinds = await db.fetch(
        "SELECT type, count(*) AS n FROM notifications WHERE owner_id = $1 GROUP BY type", int(u1["user"]["id"])
    )
    assert {r["type"]: r["n"] for r in kinds} == {"reaction_post": 1, "comment_post": 1, "reaction_comment": 1}
    for ws in sockets:
        await ws.close()


async def test_100_concurrent_reactions_and_storms_keep_the_counts_equal_to_the_rows(
    make_api: Any, register: Any, db: asyncpg.Pool
) -> None:
    author = make_api()
    await register(author)
    post = await new_post(author)
    pid = int(post["id"])
    fans = await seed_accounts(make_api(), register, db, make_api, 100)
    emojis = ["👍", "🔥", "😂", "❤️"]
    replies = await asyncio.gather(
        *(fan.put(f"{POSTS}/{pid}/reaction", {"emoji": emojis[i % 4]}) for i, fan in enumerate(fans))
    )
    assert {r.status for r in replies} == {200}

    async def storm(fan: Api) -> None:
        for _ in range(4):
            choice = random.random()
            if choice < 0.3:
                await fan.delete(f"{POSTS}/{pid}/reaction")
            else:
                await fan.put(f"{POSTS}/{pid}/reaction", {"emoji": random.choice(emojis)})

    await asyncio.gather(*(storm(fan) for fan in fans[:50]))
    got = (await author.get(f"{POSTS}/{pid}")).body
    rows = await db.fetch("SELECT emoji, count(*) AS n FROM post_reactions WHERE post_id = $1 GROUP BY emoji", pid)
    assert got["reactions_summary"] == {r["emoji"]: r["n"] for r in rows}
    assert got["counts"]["reactions"] == sum(r["n"] for r in rows)
    notes = await db.fetchval("SELECT count(*) FROM notifications WHERE post_id = $1 AND type = 'reaction_post'", pid)
    assert notes == sum(r["n"] for r in rows)  # one per standing reaction: replacing never notified again
    shards = await db.fetchval("SELECT count(DISTINCT shard) FROM post_counts WHERE post_id = $1", pid)
    assert shards > 1  # the writers spread over counter rows


async def test_live_counts_reach_subscribers_only_and_are_coalesced(
    server: Server, make_api: Any, register: Any, db: asyncpg.Pool
) -> None:
    author, watcher, other = make_api(), make_api(), make_api()
    await register(author)
    await register(watcher)
    await register(other)
    post = await new_post(author)
    pid = post["id"]
    subscribed = await WsClient.connect(server.base_url, watcher.token)  # type: ignore[arg-type]
    bystander = await WsClient.connect(server.base_url, other.token)  # type: ignore[arg-type]
    assert (await subscribed.request("subscribe", {"topic": f"post:{pid}"}))["ok"]
    assert (await subscribed.request("subscribe", {"topic": "post:999999999"}))["error"]["code"] == "not_found"
    fans = await seed_accounts(make_api(), register, db, make_api, 20)
    await asyncio.gather(*(fan.put(f"{POSTS}/{pid}/reaction", {"emoji": "🔥"}) for fan in fans))

    async def final() -> dict[str, Any] | None:
        frames = [f for f in subscribed.seen if f["type"] == "post.counts"]
        return frames[-1] if frames and frames[-1]["data"]["counts"]["reactions"] == 20 else None

    last = await wait_until(final, timeout=10)
    check_frame(last)
    assert last["id"] is None and last["data"] == {
        "post_id": pid,
        "counts": {"reactions": 20, "comments": 0, "reposts": 0, "saves": 0},
        "reactions_summary": {"🔥": 20},
    }
    sent = [f for f in subscribed.seen if f["type"] == "post.counts"]
    assert len(sent) < 20  # coalesced: far fewer frames than changes
    comment = await author.post(f"{POSTS}/{pid}/comments", {"text": "first"})
    await fans[0].put(f"/api/v1/comments/{comment.body['id']}/reaction", {"emoji": "👍"})

    async def comment_counts() -> dict[str, Any] | None:
        frames = [f for f in subscribed.seen if f["type"] == "comment.counts"]
        return frames[-1] if frames and frames[-1]["data"]["counts"]["reactions"] == 1 else None

    check_frame(await wait_until(comment_counts, timeout=10))
    assert not [f for f in bystander.seen if f["type"] in ("post.counts", "comment.counts")]
    assert (await subscribed.request("unsubscribe", {"topic": f"post:{pid}"}))["ok"]
    await subscribed.close()
    await bystander.close()


async def test_a_deleted_post_leaves_every_list_and_its_comments_go_with_it(
    make_api: Any, register: Any, db: asyncpg.Pool
) -> None:
    author, fan = make_api(), make_api()
    a = await register(author)
    await register(fan)
    post = await new_post(author, "#gone")
    pid = post["id"]
    comment = (await fan.post(f"{POSTS}/{pid}/comments", {"text": "hi"})).body
    await fan.put(f"{POSTS}/{pid}/reaction", {"emoji": "👍"})
    await fan.put(f"{POSTS}/{pid}/save")
    await fan.put(f"{POSTS}/{pid}/repost")
    assert (await author.delete(f"{POSTS}/{pid}")).status == 204
    for path in (
        "/api/v1/me/saved",
        "/api/v1/me/reacted",
        "/api/v1/me/commented",
        f"/api/v1/users/{a['username']}/posts",
    ):
        assert (await fan.get(path)).body["items"] == [], path
    assert_error(await fan.get(f"/api/v1/comments/{comment['id']}"), 404, "not_found")
    assert_error(await fan.get(f"{POSTS}/{pid}/comments"), 404, "not_found")
    assert_error(await fan.put(f"{POSTS}/{pid}/reaction", {"emoji": "👍"}), 404, "not_found")
    assert await db.fetchval("SELECT count(*) FROM notifications WHERE post_id = $1", int(pid)) == 0
    assert await db.fetchval("SELECT count(*) FROM post_counts WHERE post_id = $1", int(pid)) == 0


async def test_comment_deletion_rights_and_every_bad_engagement_input(
    make_api: Any, register: Any, db: asyncpg.Pool
) -> None:
    author, fan, stranger = make_api(), make_api(), make_api()
    await register(author)
    await register(fan)
    await register(stranger)
    post = await new_post(author)
    pid = post["id"]
    c1 = (await fan.post(f"{POSTS}/{pid}/comments", {"text": "one"})).body
    c2 = (await fan.post(f"{POSTS}/{pid}/comments", {"text": "two"})).body
    deep = (await stranger.post(f"/api/v1/comments/{c2['id']}/replies", {"text": "a reply"})).body
    deeper = (await fan.post(f"/api/v1/comments/{deep['id']}/replies", {"text": "deeper"})).body
    assert deeper["parent_id"] == deep["id"]
    assert_error(await stranger.delete(f"/api/v1/comments/{c1['id']}"), 403, "forbidden")
    assert (await author.delete(f"/api/v1/comments/{c1['id']}")).status == 204  # the post's author may
    assert (await fan.delete(f"/api/v1/comments/{c2['id']}")).status == 204  # its replies go too
    assert_error(await fan.get(f"/api/v1/comments/{deeper['id']}"), 404, "not_found")
    assert (await author.get(f"{POSTS}/{pid}")).body["counts"]["comments"] == 0

    video = await upload(fan, "video/mp4", samples.mp4())  # uploaded for a post, not a comment
    cases = [
        (await fan.post(f"{POSTS}/{pid}/comments", {}), "validation_failed", "text"),
        (await fan.post(f"{POSTS}/{pid}/comments", {"text": "x" * 2001}), "validation_failed", "text"),
        (await fan.post(f"{POSTS}/{pid}/comments", {"text": "   "}), "validation_failed", "text"),
        (await fan.post(f"{POSTS}/{pid}/comments", {"media_id": video}), "invalid_media", "media_id"),
        (await fan.post(f"{POSTS}/{pid}/comments", {"text": "x", "post_id": "1"}), "validation_failed", "post_id"),
        (await fan.put(f"{POSTS}/{pid}/reaction", {"emoji": "lol"}), "validation_failed", "emoji"),
        (await fan.put(f"{POSTS}/{pid}/reaction", {"emoji": "👍👍"}), "validation_failed", "emoji"),
        (await fan.put(f"{POSTS}/{pid}/reaction", {}), "validation_failed", "emoji"),
    ]
    for reply, code, field in cases:
        err = assert_error(reply, 422, code)
        assert field in err["details"].get("fields", {}), err
    for reply in [
        await fan.put(f"{POSTS}/999999999/reaction", {"emoji": "👍"}),
        await fan.post(f"{POSTS}/999999999/comments", {"text": "x"}),
        await fan.post("/api/v1/comments/999999999/replies", {"text": "x"}),
        await fan.put("/api/v1/comments/999999999/reaction", {"emoji": "👍"}),
        await fan.put(f"{POSTS}/999999999/repost"),
        await fan.put(f"{POSTS}/999999999/save"),
        await fan.get(f"{POSTS}/999999999/reactions"),
    ]:
        assert_error(reply, 404, "not_found")
    # Self-interactions work and notify nobody (the seed answered 500).
    assert (await author.put(f"{POSTS}/{pid}/reaction", {"emoji": "👍🏽"})).status == 200
    assert (await author.put(f"{POSTS}/{pid}/repost")).status == 200
    own = await author.post(f"{POSTS}/{pid}/comments", {"text": "my own"})
    assert own.status == 201
    owner = await db.fetchval("SELECT author_id FROM posts WHERE id = $1", int(pid))
    assert await db.fetchval("SELECT count(*) FROM notifications WHERE owner_id = $1 AND actor_id = $1", owner) == 0
    # Comments with an Idempotency-Key are made once.
    key = {"Idempotency-Key": "c-1"}
    first = await fan.post(f"{POSTS}/{pid}/comments", {"text": "once"}, headers=key)
    again = await fan.post(f"{POSTS}/{pid}/comments", {"text": "once"}, headers=key)
    assert first.status == again.status == 201 and first.body["id"] == again.body["id"]
    assert_error(
        await fan.post(f"{POSTS}/{pid}/comments", {"text": "other"}, headers=key), 422, "idempotency_key_reused"
    )


async def test_a_comment_mentioning_two_users_notifies_each_once_with_the_comment(
    server: Server, make_api: Any, register: Any, db: asyncpg.Pool
) -> None:
    author, fan, x, y = make_api(), make_api(), make_api(), make_api()
    a = await register(author)
    await register(fan)
    ux, uy = await register(x), await register(y)
    assert x.token
    ws = await WsClient.connect(server.base_url, x.token)
    await ws.gateway()
    post = await new_post(author)
    text = f"@{ux['username']} @{uy['username']} @{a['username']} look"
    made = await fan.post(f"{POSTS}/{post['id']}/comments", {"text": text})
    assert made.status == 201 and made.body["mentions"] == sorted([ux["username"], uy["username"], a["username"]])
    note = await notification(ws, "mention_comment")
    assert note["comment"] == made.body and note["post"]["id"] == post["id"]
    rows = await db.fetch("SELECT owner_id, type FROM notifications WHERE comment_id = $1", int(made.body["id"]))
    by_owner = {int(r["owner_id"]): r["type"] for r in rows}
    assert len(rows) == 3  # the author once (as comment_post, not again as a mention), each mentioned user once
    assert by_owner[int(a["user"]["id"])] == "comment_post"
    assert by_owner[int(ux["user"]["id"])] == by_owner[int(uy["user"]["id"])] == "mention_comment"
    await ws.close()
