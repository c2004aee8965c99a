"""The notification inbox over real HTTP and WebSocket: followers show up in my inbox newest first with their
summaries, exactly as the socket told me; a mention carries its post and leaves with it; the types filter; the
unread count down as I mark by ids and up to an id; pages of one stable while a new notification arrives; nobody
but the owner sees, counts or marks them; every bad input is 422 naming its field (or 401 without a token) and
changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from tests import media_samples as samples
from tests.api.test_posts import upload
from tests.asyncapi_frames import check_frame
from tests.conftest import Server
from tests.support import Api, WsClient, assert_error

INBOX = "/api/v1/me/notifications"
UNREAD = f"{INBOX}/unread-count"
READ = f"{INBOX}/read"
USERS = "/api/v1/users"
NOTIFICATION_KEYS = {"id", "type", "actor", "created_at", "read"}


async def follow(api: Api, user: dict[str, Any]) -> None:
    reply = await api.put(f"{USERS}/{user['username']}/follow")
    assert (reply.status, reply.body) == (200, {"following": True}), reply.body


async def unread(api: Api) -> int:
    reply = await api.get(UNREAD)
    assert reply.status == 200 and set(reply.body) == {"count"}, reply.body
    return int(reply.body["count"])


async def inbox(api: Api, **params: Any) -> dict[str, Any]:
    reply = await api.get(INBOX, params=params)
    assert reply.status == 200, reply.body
    assert set(reply.body) == {"items", "next_cursor"}
    return dict(reply.body)


async def read_at(db: asyncpg.Pool, owner_id: str) -> dict[str, bool]:
    rows = await db.fetch("SELECT id, read_at FROM notifications WHERE owner_id = $1", int(owner_id))
    return {str(r["id"]): r["read_at"] is not None for r in rows}


async def test_followers_show_up_in_my_inbox_newest_first_as_the_socket_said_and_i_mark_them_read(
    server: Server, make_api: Callable[..., Api], register: Any, db: asyncpg.Pool
) -> None:
    a_api, b_api, c_api = make_api(), make_api(), make_api("msgpack")
    a, b, c = await register(a_api), await register(b_api), await register(c_api)
    assert a_api.token is not None
    assert await unread(a_api) == 0 and await inbox(a_api) == {"items": [], "next_cursor": None}

    ws = await WsClient.connect(server.base_url, a_api.token)
    try:
        await follow(b_api, a)
        from_b = await ws.next_of("notification")
        await follow(c_api, a)
        from_c = await ws.next_of("notification")
    finally:
        await ws.close()
    for frame in (from_b, from_c):
        check_frame(frame)
    await follow(a_api, b)  # A follows B back: A's flags on B change, nothing lands in A's inbox

    # Newest first; each item is the socket event's data plus my flags on its actor.
    page = await inbox(a_api)
    assert page["next_cursor"] is None
    flags = [{"followed_by_me": False, "follows_me": True}, {"followed_by_me": True, "follows_me": True}]
    expected = [
        {**event["data"], "actor": {**event["data"]["actor"], **flag}}
        for event, flag in zip((from_c, from_b), flags, strict=True)
    ]
    assert page["items"] == expected
    assert [set(item) for item in page["items"]] == [NOTIFICATION_KEYS] * 2  # no post, comment or emoji
    assert [(i["type"], i["actor"]["username"], i["read"]) for i in page["items"]] == [
        ("follow", c["username"], False),
        ("follow", b["username"], False),
    ]
    assert page["items"][0]["actor"]["name"] == c["user"]["name"] and page["items"][0]["actor"]["avatar"] is None
    a_msgpack = make_api("msgpack")
    a_msgpack.token = a_api.token
    assert await inbox(a_msgpack) == page  # the same objects in MessagePack

    # The types filter: a subset of the types, in any order, each any number of times.
    assert (await inbox(a_api, types="follow"))["items"] == expected
    assert (await inbox(a_api, types="repost,follow,follow"))["items"] == expected
    assert await inbox(a_api, types="repost") == {"items": [], "next_cursor": None}
    assert await inbox(a_api, types="reaction_post,mention_comment") == {"items": [], "next_cursor": None}

    # Marking read: by ids, then up to an id; again changes nothing.
    c_note, b_note = (item["id"] for item in page["items"])
    assert await unread(a_api) == 2
    assert (await a_api.post(READ, {"ids": [b_note]})).status == 204
    assert await unread(a_api) == 1
    assert [i["read"] for i in (await inbox(a_api))["items"]] == [False, True]
    assert await read_at(db, a["user"]["id"]) == {c_note: False, b_note: True}
    assert (await a_api.post(READ, {"up_to_id": max(c_note, b_note, key=int)})).status == 204
    assert await unread(a_api) == 0
    assert [i["read"] for i in (await inbox(a_api))["items"]] == [True, True]
    first_read = await db.fetch("SELECT id, read_at FROM notifications WHERE owner_id = $1", int(a["user"]["id"]))
    for body in ({"ids": [c_note, b_note]}, {"up_to_id": "9999999999999999999"}, {"ids": ["9999999999999999999"]}):
        assert (await a_api.post(READ, body)).status == 204
    again = await db.fetch("SELECT id, read_at FROM notifications WHERE owner_id = $1", int(a["user"]["id"]))
    assert sorted(map(tuple, again)) == sorted(map(tuple, first_read))  # read_at keeps the first read
    assert await unread(a_api) == 0

    # A new follow later is unread again, and only it.
    d_api = make_api()
    await register(d_api)
    await follow(d_api, a)
    assert await unread(a_api) == 1
    assert [i["read"] for i in (await inbox(a_api))["items"]] == [False, True, True]


async def test_a_mention_is_in_my_inbox_with_its_post_as_the_socket_said_and_leaves_with_the_post(
    server: Server, make_api: Callable[..., Api], register: Any
) -> None:
    a_api, b_api = make_api(), make_api()
    await register(a_api)
    b = await register(b_api)
    await follow(a_api, b)
    assert b_api.token is not None
    ws = await WsClient.connect(server.base_url, b_api.token)
    try:
        await ws.gateway()
        media = [await upload(a_api, "image/png", samples.png())]
        made = await a_api.post(
            "/api/v1/posts", {"type": "photo", "caption": f"hi @{b['username']}", "media_ids": media}
        )
        assert made.status == 201, made.body
        frame = await ws.next_of("notification")
    finally:
        await ws.close()
    check_frame(frame)

    follow_note, mention = (await inbox(b_api, types="follow"))["items"], frame["data"]
    items = (await inbox(b_api))["items"]
    actor = {**mention["actor"], "followed_by_me": False, "follows_me": True}
    assert items == [{**mention, "actor": actor}, *follow_note]
    assert items[0]["type"] == "mention_post" and items[0]["post"] == made.body
    assert "post" not in follow_note[0]
    assert (await inbox(b_api, types="mention_post"))["items"] == items[:1]
    assert await unread(b_api) == 2

    # Deleting the post takes its notification with it.
    assert (await a_api.delete(f"/api/v1/posts/{made.body['id']}")).status == 204
    assert (await inbox(b_api))["items"] == follow_note
    assert await unread(b_api) == 1


async def test_pages_of_one_walk_three_notifications_and_stay_stable_when_a_new_one_arrives(
    make_api: Callable[..., Api], register: Any
) -> None:
    owner_api = make_api("msgpack")
    owner = await register(owner_api)
    fans = [make_api() for _ in range(4)]
    names = [(await register(fan))["username"] for fan in fans]
    for fan in fans[:3]:
        await follow(fan, owner)

    seen: list[str] = []
    page = await inbox(owner_api, limit=1)
    for step in range(3):
        assert len(page["items"]) == 1
        seen.append(page["items"][0]["actor"]["username"])
        if step == 0:
            await follow(fans[3], owner)  # arrives between pages: newer than everything already paged
        if step < 2:
            assert page["next_cursor"]
            page = await inbox(owner_api, limit=1, cursor=page["next_cursor"])
    assert page["next_cursor"] is None
    assert seen == [names[2], names[1], names[0]]

    everything = await inbox(owner_api, limit=100)
    assert [i["actor"]["username"] for i in everything["items"]] == [names[3], *seen]
    assert everything["next_cursor"] is None
    assert (await inbox(owner_api, limit=2, types="follow"))["items"] == everything["items"][:2]
    past_the_end = {"cursor": "999999999999999999-9999999999999999999"}  # clamped: the start of the inbox
    assert (await inbox(owner_api, limit=100, **past_the_end)) == everything
    assert await unread(owner_api) == 4


async def test_only_the_owner_sees_counts_or_marks_their_notifications(
    make_api: Callable[..., Api], register: Any, db: asyncpg.Pool
) -> None:
    a_api, b_api = make_api(), make_api()
    a, _ = await register(a_api), await register(b_api)
    await follow(b_api, a)
    (note,) = (await inbox(a_api))["items"]

    # B, who caused it, neither sees nor counts it, and cannot mark it: 204, and nothing changed.
    assert await inbox(b_api) == {"items": [], "next_cursor": None}
    assert await unread(b_api) == 0
    for body in ({"ids": [note["id"]]}, {"up_to_id": note["id"]}, {"up_to_id": "9999999999999999999"}):
        assert (await b_api.post(READ, body)).status == 204
    assert await unread(a_api) == 1
    assert (await inbox(a_api))["items"] == [note]
    assert await read_at(db, a["user"]["id"]) == {note["id"]: False}

    # A marking a mix of theirs and others' ids touches only theirs.
    assert (await a_api.post(READ, {"ids": ["1", note["id"], "42"]})).status == 204
    assert await unread(a_api) == 0


async def test_bad_inputs_are_422_naming_the_field_and_no_token_is_401_and_nothing_changes(
    make_api: Callable[..., Api], register: Any, db: asyncpg.Pool
) -> None:
    a_api, b_api, anon = make_api(), make_api(), make_api()
    a, _ = await register(a_api), await register(b_api)
    await follow(b_api, a)
    (note,) = (await inbox(a_api))["items"]

    for query, field in (
        ({"types": "nope"}, "types"),
        ({"types": "follow,nope"}, "types"),
        ({"types": "Follow"}, "types"),
        ({"types": ""}, "types"),
        ({"types": "follow,"}, "types"),
        ({"types": "follow, repost"}, "types"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"cursor": "12:34"}, "cursor"),
    ):
        err = assert_error(await a_api.get(INBOX, params=query), 422, "validation_failed")
        assert set(err["details"]["fields"]) == {field}, (query, err)
    err = assert_error(await a_api.get(INBOX, params={"types": "follow,nope"}), 422, "validation_failed")
    assert "'nope'" in err["details"]["fields"]["types"]

    ids = [str(n) for n in range(1, 102)]
    for body, fields in (
        ({"up_to_id": note["id"], "ids": [note["id"]]}, {"up_to_id", "ids"}),
        ({}, {"up_to_id", "ids"}),
        ({"ids": ids}, {"ids"}),
        ({"ids": []}, {"ids"}),
        ({"ids": ["abc"]}, {"ids.0"}),
        ({"ids": [note["id"], "12x"]}, {"ids.1"}),
        ({"ids": [int(note["id"])]}, {"ids.0"}),
        ({"ids": None}, {"ids"}),
        ({"up_to_id": "abc"}, {"up_to_id"}),
        ({"up_to_id": "-1"}, {"up_to_id"}),
        ({"up_to_id": int(note["id"])}, {"up_to_id"}),
        ({"up_to_id": None}, {"up_to_id"}),
        ({"up_to_id": note["id"], "read": True}, {"read"}),
        ({"ids": [note["id"]], "owner_id": a["user"]["id"]}, {"owner_id"}),
    ):
        err = assert_error(await a_api.post(READ, body), 422, "validation_failed")
        assert set(err["details"]["fields"]) == fields, (body, err)

    for reply in (
        await anon.get(INBOX),
        await anon.get(UNREAD),
        await anon.post(READ, {"up_to_id": note["id"]}),
        await anon.get(INBOX, headers={"Authorization": "Bearer not-a-token"}),
    ):
        assert_error(reply, 401, "unauthenticated")

    assert await unread(a_api) == 1
    assert await read_at(db, a["user"]["id"]) == {note["id"]: False}
