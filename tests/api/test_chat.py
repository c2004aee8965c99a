"""1:1 chat over real HTTP and sockets, the two members on different gateway processes: the seed's chat story
(send, delivered, read, react, remove the reaction, delete for everyone), every message type, exactly-once sends,
ordering under concurrency, an offline member catching up with ``since``, and every bad input."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
import httpx

from tests import media_samples as samples
from tests.api.realtime_helpers import socket_on_gateway
from tests.asyncapi_frames import check_frame
from tests.conftest import Server
from tests.support import Api, WsClient, assert_error, unique, wait_until

CHATS = "/api/v1/chats"


async def pair(make_api: Any, register: Any, fmt: str = "json") -> tuple[Api, Api, dict[str, Any], dict[str, Any]]:
    alice, bob = make_api(fmt), make_api(fmt)
    a = await register(alice)
    b = await register(bob)
    return alice, bob, a, b


async def open_chat(alice: Api, b: dict[str, Any]) -> str:
    reply = await alice.post(CHATS, {"username": b["username"]})
    assert reply.status == 201, reply.body
    return str(reply.body["id"])


async def upload_for_chat(api: Api, ctype: str, data: bytes) -> dict[str, Any]:
    made = await api.post("/api/v1/media", {"purpose": "chat", "content_type": ctype, "size": len(data)})
    assert made.status == 201, made.body
    async with httpx.AsyncClient(timeout=30) as http:
        sent = await http.put(made.body["upload"]["url"], content=data, headers=made.body["upload"]["headers"])
        assert sent.status_code == 204
    done = await api.post(f"/api/v1/media/{made.body['media_id']}/complete")
    assert done.status == 200, done.body
    return dict(done.body)


async def two_sockets(server: Server, alice: Api, bob: Api) -> tuple[WsClient, WsClient]:
    """Alice's and Bob's sockets on different gateway processes."""
    assert alice.token and bob.token
    ws_a, gateway = await socket_on_gateway(server.base_url, alice.token)
    ws_b, _ = await socket_on_gateway(server.base_url, bob.token, avoid=gateway)
    return ws_a, ws_b


_read_upto: dict[int, int] = {}  # per socket: how many of its frames (ws.seen) next_event has looked at


async def next_event(ws: WsClient, type_: str, timeout: float = 10.0) -> dict[str, Any]:
    """The next ``type_`` frame this socket received, in arrival order, including frames that ``ws.request``
    skipped while it waited for its ack (a chat event can arrive before the ack of the send that caused it)."""

    async def found() -> dict[str, Any] | None:
        start = _read_upto.get(id(ws), 0)
        for i in range(start, len(ws.seen)):
            if ws.seen[i]["type"] == type_:
                _read_upto[id(ws)] = i + 1
                return ws.seen[i]
        return None

    frame = await wait_until(found, timeout=timeout)
    check_frame(frame)
    return frame


async def seen_ack(ws: WsClient, ref: str) -> dict[str, Any]:
    """The ack of ``ref`` among everything the socket received (several requests may be in flight at once)."""

    async def found() -> dict[str, Any] | None:
        return next((dict(f["data"]) for f in ws.seen if f["type"] == "ack" and f["data"].get("ref") == ref), None)

    return await wait_until(found, timeout=30)


async def test_the_seed_chat_story_over_sockets_on_two_gateways(
    server: Server, make_api: Any, register: Any, db: asyncpg.Pool
) -> None:
    alice, bob, a, b = await pair(make_api, register)
    chat_id = await open_chat(alice, b)
    again = await bob.post(CHATS, {"username": a["username"]})
    assert again.status == 200 and again.body["id"] == chat_id  # one chat per pair, whoever starts it
    ws_a, ws_b = await two_sockets(server, alice, bob)

    # 1-2. Alice sends; Bob receives it, acks delivered.
    ack = await ws_a.request("chat.send", {"chat_id": chat_id, "client_id": "c-1", "type": "text", "text": "hi 👋"})
    assert ack["ok"], ack
    sent = ack["result"]
    assert sent["seq"] == 1 and sent["text"] == "hi 👋" and sent["sender"]["username"] == a["username"]
    got = (await next_event(ws_b, "chat.message"))["data"]
    assert got == sent
    assert (await next_event(ws_a, "chat.message"))["data"]["id"] == sent["id"]  # the sender's devices too
    assert (await ws_b.request("chat.delivered", {"chat_id": chat_id, "seq": 1}))["ok"]

    # 3. Alice hears it was delivered; 4. Bob reads it, Alice hears that.
    receipt = (await next_event(ws_a, "chat.receipt"))["data"]
    assert receipt == {"chat_id": chat_id, "username": b["username"], "delivered_seq": 1, "read_seq": 0}
    assert (await ws_b.request("chat.read", {"chat_id": chat_id, "seq": 1}))["ok"]
    receipt = (await next_event(ws_a, "chat.receipt"))["data"]
    assert receipt["read_seq"] == 1 and receipt["delivered_seq"] == 1

    # 5. Bob reacts 🚀; Alice sees it.
    reacted = await bob.put(f"{CHATS}/{chat_id}/messages/{sent['id']}/reaction", {"emoji": "🚀"})
    assert reacted.status == 200 and reacted.body["reactions"] == {"🚀": [b["username"]]}
    reaction = (await next_event(ws_a, "chat.reaction"))["data"]
    assert reaction == {
        "chat_id": chat_id,
        "message_id": sent["id"],
        "emoji": "🚀",
        "username": b["username"],
        "added": True,
    }

    # 6-7. Bob sends a photo with a caption; Alice receives it and can download it (she is a member).
    photo = await upload_for_chat(bob, "image/jpeg", samples.jpeg_with_gps(400, 300))
    ack = await ws_b.request(
        "chat.send",
        {"chat_id": chat_id, "client_id": "p-1", "type": "image", "media_id": photo["id"], "caption": "look"},
    )
    assert ack["ok"], ack
    pic = (await next_event(ws_a, "chat.message"))["data"]
    assert pic["seq"] == 2 and pic["caption"] == "look" and pic["media"]["id"] == photo["id"]
    async with httpx.AsyncClient(timeout=10) as http:
        download = await http.get(pic["media"]["url"])
        assert download.status_code == 200 and download.headers["content-type"] == "image/jpeg"
        assert (await http.get(pic["media"]["url"].split("?")[0])).status_code == 404  # not without the signature

    # 8. History, newest first, as Alice sees it.
    history = await alice.get(f"{CHATS}/{chat_id}/messages")
    assert history.status == 200
    items = history.body["items"]
    assert [m["seq"] for m in items] == [2, 1] and items[1]["reactions"] == {"🚀": [b["username"]]}
    chats = await alice.get(CHATS)
    mine = next(c for c in chats.body["items"] if c["id"] == chat_id)
    assert mine["peer"]["username"] == b["username"] and mine["unread_count"] == 1 and mine["last_message"]["seq"] == 2
    bobs = next(c for c in (await bob.get(CHATS)).body["items"] if c["id"] == chat_id)
    assert bobs["unread_count"] == 0  # his own photo is not unread for him; he read Alice's message

    # 9. Bob removes his reaction; 10. Alice deletes her message for everyone.
    removed = await bob.delete(f"{CHATS}/{chat_id}/messages/{sent['id']}/reaction")
    assert removed.status == 204
    reaction = (await next_event(ws_a, "chat.reaction"))["data"]
    assert reaction["added"] is False and reaction["emoji"] == "🚀"
    assert (await alice.delete(f"{CHATS}/{chat_id}/messages/{sent['id']}", params={"for": "everyone"})).status == 204
    gone = (await next_event(ws_b, "chat.message_deleted"))["data"]
    assert gone["id"] == sent["id"] and gone["deleted"] is True and gone["text"] is None
    seen_by_bob = (await bob.get(f"{CHATS}/{chat_id}/messages")).body["items"]
    assert seen_by_bob[1]["deleted"] is True and seen_by_bob[1]["text"] is None and seen_by_bob[1]["reactions"] == {}

    # Delete for me: gone from Bob's history only.
    assert (await bob.delete(f"{CHATS}/{chat_id}/messages/{pic['id']}", params={"for": "me"})).status == 204
    assert [m["seq"] for m in (await bob.get(f"{CHATS}/{chat_id}/messages")).body["items"]] == [1]
    assert [m["seq"] for m in (await alice.get(f"{CHATS}/{chat_id}/messages")).body["items"]] == [2, 1]
    await ws_a.close()
    await ws_b.close()


async def test_every_message_type_is_sent_and_read_back(make_api: Any, register: Any) -> None:
    alice, bob, _, b = await pair(make_api, register)
    chat_id = await open_chat(alice, b)
    kinds = {
        "voice": ("audio/ogg", samples.ogg()),
        "image": ("image/png", samples.png()),
        "video": ("video/mp4", samples.mp4()),
        "audio": ("audio/mpeg", samples.mp3()),
        "file": ("application/pdf", samples.pdf()),
    }
    sent = [await alice.post(f"{CHATS}/{chat_id}/messages", {"client_id": "t", "type": "text", "text": "plain"})]
    for type_, (ctype, data) in kinds.items():
        media = await upload_for_chat(alice, ctype, data)
        body: dict[str, Any] = {"client_id": type_, "type": type_, "media_id": media["id"], "caption": f"a {type_}"}
        if type_ in ("voice", "audio"):
            body["duration_ms"] = 3200
        sent.append(await alice.post(f"{CHATS}/{chat_id}/messages", body))
    assert [r.status for r in sent] == [201] * 6
    history = (await bob.get(f"{CHATS}/{chat_id}/messages", params={"after_seq": 0})).body["items"]
    assert [m["type"] for m in history] == ["text", "voice", "image", "video", "audio", "file"]
    assert [m["seq"] for m in history] == [1, 2, 3, 4, 5, 6]
    by_type = {m["type"]: m for m in history}
    assert by_type["voice"]["media"]["duration_ms"] == 3200 and by_type["video"]["media"]["duration_ms"] == 2500
    assert by_type["file"]["caption"] == "a file" and by_type["image"]["media"]["width"] == 300
    async with httpx.AsyncClient(timeout=10) as http:
        got = await http.get(by_type["file"]["media"]["url"])
        assert got.status_code == 200 and got.content == samples.pdf()


async def test_the_same_client_id_five_times_over_http_and_the_socket_at_once_is_one_message(
    server: Server, make_api: Any, register: Any, db: asyncpg.Pool
) -> None:
    alice, _bob, _, b = await pair(make_api, register)
    chat_id = await open_chat(alice, b)
    assert alice.token
    ws = await WsClient.connect(server.base_url, alice.token)
    body = {"client_id": "retry-me", "type": "text", "text": "only once"}
    http_sends = [alice.post(f"{CHATS}/{chat_id}/messages", body) for _ in range(3)]
    refs = [await ws.send("chat.send", {"chat_id": chat_id, **body}) for _ in range(2)]
    socket_sends = [seen_ack(ws, ref) for ref in refs]
    replies = await asyncio.gather(*http_sends, *socket_sends)
    https, acks = replies[:3], replies[3:]
    ids = {r.body["id"] for r in https} | {a["result"]["id"] for a in acks}
    assert len(ids) == 1
    assert sorted(r.status for r in https) in ([200, 200, 200], [200, 200, 201])
    assert await db.fetchval("SELECT count(*) FROM messages WHERE chat_id = $1", int(chat_id)) == 1
    # Once more later: still the same message, 200; with another body: refused.
    later = await alice.post(f"{CHATS}/{chat_id}/messages", body)
    assert later.status == 200 and later.body["id"] in ids
    assert_error(
        await alice.post(f"{CHATS}/{chat_id}/messages", {**body, "text": "something else"}),
        422,
        "idempotency_key_reused",
    )
    await ws.close()


async def test_both_members_sending_200_each_at_once_get_gap_free_seq_in_one_order(
    server: Server, make_api: Any, register: Any
) -> None:
    alice, bob, _, b = await pair(make_api, register)
    chat_id = await open_chat(alice, b)
    assert alice.token and bob.token
    watchers = await two_sockets(server, alice, bob)
    senders = [await WsClient.connect(server.base_url, t) for t in (alice.token,) * 4 + (bob.token,) * 4]

    async def burst(ws: WsClient, n: int, tag: str) -> list[int]:
        refs = [
            await ws.send("chat.send", {"chat_id": chat_id, "client_id": f"{tag}-{i}", "type": "text", "text": tag})
            for i in range(n)
        ]
        return [(await seen_ack(ws, ref))["result"]["seq"] for ref in refs]

    seqs = await asyncio.gather(*(burst(ws, 50, f"s{k}") for k, ws in enumerate(senders)))
    assert sorted(s for run in seqs for s in run) == list(range(1, 401))
    for run in seqs:
        assert run == sorted(run)  # one socket's sends keep their order
    for watcher in watchers:
        seen: list[int] = []
        while len(seen) < 400:
            seen.append((await watcher.next_of("chat.message", timeout=30))["data"]["seq"])
        assert seen == list(range(1, 401))  # every member's stream in seq order, none missing
    for ws in (*watchers, *senders):
        await ws.close()


async def test_an_offline_member_catches_up_with_since_in_order(server: Server, make_api: Any, register: Any) -> None:
    alice, bob, _, b = await pair(make_api, register)
    chat_id = await open_chat(alice, b)
    assert bob.token
    ws_b = await WsClient.connect(server.base_url, bob.token)
    await alice.post(f"{CHATS}/{chat_id}/messages", {"client_id": "first", "type": "text", "text": "1"})
    first = await ws_b.next_of("chat.message")
    await ws_b.close()
    for i in range(2, 12):
        await alice.post(f"{CHATS}/{chat_id}/messages", {"client_id": f"m{i}", "type": "text", "text": str(i)})
    back = await WsClient.connect(server.base_url, bob.token, since=first["id"])
    seqs = [(await back.next_of("chat.message"))["data"]["seq"] for _ in range(10)]
    assert seqs == list(range(2, 12))
    await back.close()


async def test_typing_reaches_the_peer_only_and_expires(server: Server, make_api: Any, register: Any) -> None:
    alice, bob, a, b = await pair(make_api, register)
    chat_id = await open_chat(alice, b)
    ws_a, ws_b = await two_sockets(server, alice, bob)
    assert (await ws_a.request("chat.typing", {"chat_id": chat_id, "typing": True}))["ok"]
    frame = await next_event(ws_b, "chat.typing")
    assert frame["id"] is None and frame["data"] == {"chat_id": chat_id, "username": a["username"], "typing": True}
    stopped = await next_event(ws_b, "chat.typing", timeout=15)  # no refresh: it runs out by itself
    assert stopped["data"]["typing"] is False
    assert not [f for f in ws_a.seen if f["type"] == "chat.typing"]
    await ws_a.close()
    await ws_b.close()


async def test_a_chat_shard_killed_mid_conversation_loses_and_reorders_nothing(
    server: Server, make_api: Any, register: Any, db: asyncpg.Pool
) -> None:
    import os
    import signal

    alice, _bob, _, b = await pair(make_api, register)
    chat_id = await open_chat(alice, b)
    for i in range(1, 6):
        await alice.post(f"{CHATS}/{chat_id}/messages", {"client_id": f"before-{i}", "type": "text", "text": "x"})
    for shard in (await alice.get("/api/v1/_test/chat_shards")).body:
        os.kill(shard["pid"], signal.SIGKILL)

    async def send(i: int) -> Any:
        body = {"client_id": f"after-{i}", "type": "text", "text": "y"}
        for _ in range(60):  # the client retries a 503 with the same client_id, as a client would
            reply = await alice.post(f"{CHATS}/{chat_id}/messages", body)
            if reply.status != 503:
                return reply
            await asyncio.sleep(0.5)
        raise AssertionError("the chat shard did not come back")

    replies = [await send(i) for i in range(1, 6)]
    assert [r.status for r in replies] in ([201] * 5, [200] + [201] * 4)
    assert [r.body["seq"] for r in replies] == [6, 7, 8, 9, 10]

    async def all_there() -> list[int] | None:
        rows = await db.fetch("SELECT seq FROM messages WHERE chat_id = $1 ORDER BY seq", int(chat_id))
        return [r["seq"] for r in rows] or None

    assert await wait_until(all_there) == list(range(1, 11))

    # Every ChatShard was killed, not only this chat's: the next test must not meet one still restarting.
    async def all_shards_up() -> bool | None:
        return (await alice.get("/api/v1/_test/chat_shards")).status == 200 or None

    await wait_until(all_shards_up, timeout=60)


async def test_non_members_get_404_for_everything_about_a_chat(server: Server, make_api: Any, register: Any) -> None:
    alice, _bob, _, b = await pair(make_api, register)
    eve = make_api()
    await register(eve)
    chat_id = await open_chat(alice, b)
    sent = (await alice.post(f"{CHATS}/{chat_id}/messages", {"client_id": "s", "type": "text", "text": "secret"})).body
    base = f"{CHATS}/{chat_id}"
    for reply in [
        await eve.get(f"{base}/messages"),
        await eve.post(f"{base}/messages", {"client_id": "e", "type": "text", "text": "hi"}),
        await eve.patch(f"{base}/messages/{sent['id']}", {"text": "mine now"}),
        await eve.delete(f"{base}/messages/{sent['id']}", params={"for": "everyone"}),
        await eve.put(f"{base}/messages/{sent['id']}/reaction", {"emoji": "👍"}),
        await eve.post(f"{base}/read", {"seq": 1}),
        await eve.get(f"{CHATS}/999999999/messages"),
    ]:
        assert_error(reply, 404, "not_found")
    assert eve.token
    ws = await WsClient.connect(server.base_url, eve.token)
    for action, data in [
        ("chat.send", {"chat_id": chat_id, "client_id": "e", "type": "text", "text": "hi"}),
        ("chat.read", {"chat_id": chat_id, "seq": 1}),
        ("chat.typing", {"chat_id": chat_id, "typing": True}),
        ("chat.send", {"chat_id": "not-an-id", "client_id": "e", "type": "text", "text": "hi"}),
    ]:
        ack = await ws.request(action, data)
        assert ack["ok"] is False and ack["error"]["code"] == "not_found", ack
    await ws.close()
    assert not [c for c in (await eve.get(CHATS)).body["items"] if c["id"] == chat_id]


async def test_every_bad_chat_input_gets_its_error_and_changes_nothing(
    make_api: Any, register: Any, db: asyncpg.Pool
) -> None:
    alice, bob, a, b = await pair(make_api, register)
    chat_id = await open_chat(alice, b)
    base = f"{CHATS}/{chat_id}"
    other = make_api()
    c = await register(other)
    other_chat = await open_chat(alice, c)
    foreign = (await alice.post(f"{CHATS}/{other_chat}/messages", {"client_id": "o", "type": "text", "text": "x"})).body
    mine = (await alice.post(f"{base}/messages", {"client_id": "m", "type": "text", "text": "x"})).body
    png = await upload_for_chat(alice, "image/png", samples.png())
    bobs_png = await upload_for_chat(bob, "image/png", samples.png())
    avatar = (await alice.post("/api/v1/media", {"purpose": "post", "content_type": "image/png", "size": 10})).body

    def send(body: dict[str, Any]) -> Any:
        return alice.post(f"{base}/messages", {"client_id": unique("bad"), **body})

    cases = [
        (await send({"type": "video", "media_id": png["id"]}), 422, "invalid_media"),  # wrong kind
        (await send({"type": "image", "media_id": bobs_png["id"]}), 422, "invalid_media"),  # someone else's
        (await send({"type": "image", "media_id": avatar["media_id"]}), 422, "media_not_ready"),
        (await send({"type": "text", "text": "re", "reply_to": foreign["id"]}), 422, "validation_failed"),
        (await send({"type": "text", "text": "x" * 4001}), 422, "validation_failed"),
        (await send({"type": "text", "text": "   "}), 422, "validation_failed"),
        (await send({"type": "text"}), 422, "validation_failed"),
        (await send({"type": "image"}), 422, "validation_failed"),
        (await send({"type": "text", "text": "x", "media_id": png["id"]}), 422, "validation_failed"),
        (await send({"type": "image", "media_id": png["id"], "text": "no"}), 422, "validation_failed"),
        (await send({"type": "text", "text": "x", "sender_id": "1"}), 422, "validation_failed"),
        (await send({"type": "sticker", "text": "x"}), 422, "validation_failed"),
        (await bob.patch(f"{base}/messages/{mine['id']}", {"text": "edited by bob"}), 403, "forbidden"),
        (await bob.delete(f"{base}/messages/{mine['id']}", params={"for": "everyone"}), 403, "forbidden"),
        (await bob.post(f"{base}/read", {"seq": 99}), 422, "seq_out_of_range"),
        (await bob.put(f"{base}/messages/{mine['id']}/reaction", {"emoji": "not an emoji"}), 422, "validation_failed"),
        (await bob.put(f"{base}/messages/{mine['id']}/reaction", {"emoji": "👍👍"}), 422, "validation_failed"),
        (await bob.put(f"{base}/messages/{foreign['id']}/reaction", {"emoji": "👍"}), 404, "not_found"),
        (await alice.post(CHATS, {"username": a["username"]}), 422, "validation_failed"),
        (await alice.post(CHATS, {"username": "nobody_" + str(random.randrange(10**6))}), 404, "not_found"),
    ]
    for reply, status, code in cases:
        assert_error(reply, status, code)
    assert await db.fetchval("SELECT count(*) FROM messages WHERE chat_id = $1", int(chat_id)) == 1
    assert await db.fetchval("SELECT last_seq FROM chats WHERE id = $1", int(chat_id)) == 1
    assert (await alice.get(f"{base}/messages")).body["items"][0]["text"] == "x"
    edited = await alice.patch(f"{base}/messages/{mine['id']}", {"text": "fixed"})
    assert edited.status == 200 and edited.body["text"] == "fixed" and edited.body["edited_at"]
    # Receipts never go backwards.
    assert (await bob.post(f"{base}/read", {"seq": 1})).status == 204
    assert (await bob.post(f"{base}/read", {"seq": 0})).status == 204
    assert (
        await db.fetchval(
            "SELECT read_seq FROM chat_members WHERE chat_id = $1 AND user_id = $2", int(chat_id), int(b["user"]["id"])
        )
        == 1
    )
