"""The codec middleware in-process, around tiny ASGI apps (the HTTP tests cover it end to end)."""

from __future__ import annotations

import httpx
import msgpack
import orjson
import pytest
from starlette.types import Receive, Scope, Send

from api.codec import CodecMiddleware, wants_msgpack


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, False),
        ("application/json", False),
        ("application/msgpack", True),
        ("application/vnd.msgpack", True),
        ("application/x-msgpack", True),
        ("application/json;q=0.9, application/msgpack", True),
        ("application/json, application/msgpack;q=0.5", False),
        ("application/msgpack;q=0", False),
        ("*/*", False),
    ],
)
def test_accept_negotiation(accept: str | None, expected: bool) -> None:
    assert wants_msgpack(accept) is expected


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()
    body = orjson.dumps({"got": orjson.loads(message["body"]) if message["body"] else None})
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def _boom(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("secret internal detail")


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=CodecMiddleware(app, 100)), base_url="http://t")  # type: ignore[arg-type]


async def test_msgpack_in_and_out_through_one_path() -> None:
    async with _client(_echo) as client:
        reply = await client.post(
            "/",
            content=msgpack.packb({"a": [1, "x"]}),
            headers={"content-type": "application/msgpack", "accept": "application/msgpack"},
        )
    assert reply.headers["content-type"] == "application/msgpack"
    assert msgpack.unpackb(reply.content) == {"got": {"a": [1, "x"]}}
    assert reply.headers["x-request-id"]


async def test_an_unhandled_error_is_a_500_without_the_stack() -> None:
    async with _client(_boom) as client:
        reply = await client.get("/", headers={"x-request-id": "req-123"})
    assert reply.status_code == 500
    body = reply.json()
    assert body["error"]["code"] == "internal"
    assert body["error"]["details"] == {"request_id": "req-123"}
    assert "secret" not in reply.text
    assert "Traceback" not in reply.text


async def test_size_type_and_decoding_errors_have_the_error_shape() -> None:
    async with _client(_echo) as client:
        big = await client.post("/", content=b"{" + b" " * 200 + b"}", headers={"content-type": "application/json"})
        text = await client.post("/", content=b"hello", headers={"content-type": "text/plain"})
        bad = await client.post("/", content=b"\xc1", headers={"content-type": "application/msgpack"})
        binary = await client.post(
            "/",
            content=msgpack.packb({"b": b"\x00"}, use_bin_type=True),
            headers={"content-type": "application/msgpack"},
        )
    assert (big.status_code, big.json()["error"]["code"]) == (413, "payload_too_large")
    assert (text.status_code, text.json()["error"]["code"]) == (415, "unsupported_media_type")
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "malformed_body")
    assert (binary.status_code, binary.json()["error"]["code"]) == (400, "malformed_body")
