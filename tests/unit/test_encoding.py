"""One encoding per response: every route answers with bytes encoded once; the codec middleware passes them through
and re-encodes only what is still JSON (never the OpenAPI document)."""

from __future__ import annotations

import inspect
import typing

import httpx
import msgpack
import orjson
import pytest
from fastapi import Response
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.types import Receive, Scope, Send

from api.app import create_app
from api.codec import CodecMiddleware
from storage.config import Settings


def test_every_route_returns_a_response_it_encoded_itself() -> None:
    """FastAPI validates and serializes whatever is not a Response; no route of ours may leave that to it."""
    app = create_app(Settings(jwt_secret="x" * 32, env="test"))
    routes = [r for r in iter_route_contexts(app.routes) if isinstance(r.original_route, APIRoute)]
    assert len(routes) > 10
    for route in routes:
        assert route.endpoint is not None
        returned = typing.get_type_hints(route.endpoint)["return"]
        assert inspect.isclass(returned) and issubclass(returned, Response), (route.path, returned)


# A MessagePack body that re-encoding would change: a float32 (0xca) where msgpack-python writes float64 (0xcb).
PACKED = b"\x81\xa1x\xca\x3f\xc0\x00\x00"


async def _packed(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"content-type", b"application/msgpack"), (b"content-length", str(len(PACKED)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": PACKED})


async def _json(scope: Scope, receive: Receive, send: Send) -> None:
    body = orjson.dumps({"path": scope["path"]})
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def _client(app: object, **kw: object) -> httpx.AsyncClient:
    wrapped = CodecMiddleware(app, 100, **kw)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://t")  # type: ignore[arg-type]


async def test_an_encoded_messagepack_body_passes_through_byte_for_byte() -> None:
    async with _client(_packed) as client:
        reply = await client.get("/", headers={"accept": "application/msgpack"})
    assert reply.headers["content-type"] == "application/msgpack"
    assert reply.content == PACKED


@pytest.mark.parametrize("path", ["/openapi.json", "/other"])
async def test_json_only_paths_stay_json_and_others_fall_back_to_messagepack(path: str) -> None:
    async with _client(_json, json_only_paths=frozenset({"/openapi.json"})) as client:
        reply = await client.get(path, headers={"accept": "application/msgpack"})
    if path == "/openapi.json":
        assert reply.headers["content-type"] == "application/json"
        assert reply.json() == {"path": path}
    else:
        assert reply.headers["content-type"] == "application/msgpack"
        assert msgpack.unpackb(reply.content) == {"path": path}
