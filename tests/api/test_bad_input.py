"""Hostile input never reaches a 500 or a 4500: each gets its documented 4xx, or a per-frame error ack on a
socket that stays usable."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgpack
import pytest
import websockets

from tests.conftest import Server
from tests.support import WsClient, assert_error


async def test_a_nul_character_in_a_body_string_is_a_422_not_a_500(api: Any, register: Any) -> None:
    reply = await api.post("/api/v1/auth/login", {"login": "ali\u0000ce", "password": "whatever-Pass-1"})
    err = assert_error(reply, 422, "validation_failed")
    assert "login" in err["details"]["fields"]
    await register(api)
    reply = await api.patch("/api/v1/me", {"bio": "hi\u0000there"})
    err = assert_error(reply, 422, "validation_failed")
    assert "bio" in err["details"]["fields"]


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 1000 + b"]" * 1000,  # nested 1,000 deep
        b'{"login": "' + b"\xff\xfe" + b'", "password": "x"}',  # invalid UTF-8
        b'{"login": {"a": ' * 1000 + b"1" + b"}" * 1000 + b"}",
    ],
)
async def test_unparseable_json_bodies_are_400_malformed_body(api: Any, raw: bytes) -> None:
    reply = await api.post("/api/v1/auth/login", raw=raw, headers={"Content-Type": "application/json"})
    assert_error(reply, 400, "malformed_body")


async def test_a_trailing_slash_never_redirects_to_the_host_header(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        reply = await client.get("/api/v1/me/", headers={"Host": "evil.example"})
    assert reply.status_code == 404, (reply.status_code, reply.headers)
    assert "location" not in reply.headers
    assert "evil.example" not in reply.text


async def test_a_since_beyond_any_stream_id_is_refused_with_422_before_the_upgrade(
    server: Server, api: Any, register: Any
) -> None:
    await register(api)
    for since in ("99999999999999999999-0", "1-99999999999999999999", "18446744073709551616-0"):
        with pytest.raises(websockets.InvalidStatus) as info:
            await WsClient.connect(server.base_url, api.token, since=since)
        assert info.value.response.status_code == 422
    ws = await WsClient.connect(server.base_url, api.token, since="18446744073709551615-0")  # the largest id
    assert (await ws.request("ping"))["ok"]
    await ws.close()


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_hostile_frames_get_error_acks_and_the_socket_stays_usable(
    server: Server, api: Any, register: Any, fmt: str
) -> None:
    await register(api)
    ws = await WsClient.connect(server.base_url, api.token, fmt=fmt)

    async def ack_of(raw: bytes | str) -> dict[str, Any]:
        await ws.send_raw(raw)
        frame = await ws.next_of("ack")
        return dict(frame["data"])

    # A NUL in a topic: not found (no such user), not a 4500.
    reply = await ws.request("subscribe", {"topic": "presence:ali\u0000ce"})
    assert reply["ok"] is False and reply["error"]["code"] in ("not_found", "validation_failed"), reply
    reply = await ws.request("subscribe", {"topic": "post:12\u00003"})
    assert reply["ok"] is False and reply["error"]["code"] in ("not_found", "validation_failed"), reply
    reply = await ws.request("subscribe", {"topic": "presence:" + "x" * 10_000})
    assert reply["ok"] is False

    # A frame nested about 990 levels deep (built by hand: the client encoders refuse such depth).
    if fmt == "json":
        deep: bytes | str = '{"ref": "deep", "action": "ping", "data": {"x": ' + "[" * 990 + "1" + "]" * 990 + "}}"
    else:
        head = msgpack.packb({"ref": "deep", "action": "ping"})[1:]  # the map's two entries, without its header
        deep = b"\x83" + head + msgpack.packb("data") + b"\x81" + msgpack.packb("x") + b"\x91" * 990 + b"\x01"
    reply = await ack_of(deep)
    assert reply["ok"] is False and reply["error"]["code"] in ("malformed_frame", "validation_failed"), reply
    if fmt == "json":
        reply = await ack_of("[" * 5000 + "]" * 5000)
        assert reply["error"]["code"] == "malformed_frame"

    assert (await ws.request("ping"))["ok"]
    assert not ws.closed.done()
    await ws.close()


async def test_a_rate_limited_frame_is_acked_with_its_own_ref(server: Server, api: Any, register: Any) -> None:
    await register(api)
    ws = await WsClient.connect(server.base_url, api.token)
    refs = [f"burst{i}" for i in range(200)]
    for ref in refs:
        await ws.send("ping", ref=ref)
    acks: dict[str, dict[str, Any]] = {}
    while len(acks) < len(refs):
        frame = await ws.next_of("ack")
        acks[frame["data"]["ref"]] = frame["data"]
    assert set(acks) == set(refs)  # every frame answered under its own ref
    limited = [a for a in acks.values() if not a["ok"]]
    assert limited and all(a["error"]["code"] == "rate_limited" for a in limited)
    await asyncio.sleep(1.1)  # the one-second window passes
    assert (await ws.request("ping"))["ok"]
    await ws.close()


async def test_hostile_bodies_on_the_post_chat_and_media_writes_are_4xx_and_write_nothing(
    make_api: Any, register: Any, db: Any
) -> None:
    alice, bob = make_api(), make_api()
    me = await register(alice)
    peer = await register(bob)
    chat = (await alice.post("/api/v1/chats", {"username": peer["username"]})).body["id"]
    nested: Any = "x"
    for _ in range(200):
        nested = {"a": nested}
    writes = [
        ("/api/v1/posts", {"type": "photo", "caption": "a\u0000b", "media_ids": ["1"]}, "caption"),
        ("/api/v1/posts", {"type": "photo", "caption": nested, "media_ids": ["1"]}, "caption"),
        (f"/api/v1/chats/{chat}/messages", {"client_id": "c", "type": "text", "text": "nul\u0000"}, "text"),
        (f"/api/v1/chats/{chat}/messages", {"client_id": "c", "type": "text", "text": nested}, "text"),
        (f"/api/v1/chats/{chat}/messages", {"client_id": "c\u0000", "type": "text", "text": "x"}, "client_id"),
        ("/api/v1/media", {"purpose": "chat", "content_type": "text/plain", "size": 5, "name": "a\u0000"}, "name"),
        ("/api/v1/chats", {"username": nested}, "username"),
    ]
    for path, body, field in writes:
        err = assert_error(await alice.post(path, body), 422, "validation_failed")
        assert field in err["details"]["fields"], (path, err)
    huge = {"client_id": "h", "type": "text", "text": "x" * 100_000}  # past the test server's 64 KiB body limit
    assert_error(await alice.post(f"/api/v1/chats/{chat}/messages", huge), 413, "payload_too_large")
    uid = int(me["user"]["id"])
    assert await db.fetchval("SELECT count(*) FROM posts WHERE author_id = $1", uid) == 0
    assert await db.fetchval("SELECT count(*) FROM messages WHERE sender_id = $1", uid) == 0
    assert await db.fetchval("SELECT count(*) FROM media WHERE owner_id = $1", uid) == 0
