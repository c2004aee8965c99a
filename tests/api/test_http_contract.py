"""The HTTP contract around the routes: health without internals, the OpenAPI document always JSON, Allow on 405,
Swagger UI served with no internet, and every response encoded once in the negotiated format."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import msgpack
import orjson
import pytest

from tests.conftest import Server
from tests.support import Api, assert_error


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_health_and_readiness_say_ok_and_nothing_internal(make_api: Callable[..., Api], fmt: str) -> None:
    api = make_api(fmt)
    health = await api.get("/healthz")
    assert (health.status, health.body) == (200, {"status": "ok"})
    ready = await api.get("/readyz")
    assert ready.status == 200
    assert ready.body == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok", "ray": "ok"}}
    for reply in (health, ready):
        assert reply.headers["content-type"] == ("application/msgpack" if fmt == "msgpack" else "application/json")


async def test_the_openapi_document_is_json_even_when_messagepack_is_asked(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        reply = await client.get("/openapi.json", headers={"Accept": "application/msgpack"})
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert orjson.loads(reply.content)["openapi"].startswith("3.")


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_a_405_allows_exactly_the_methods_of_its_path(make_api: Callable[..., Api], fmt: str) -> None:
    api = make_api(fmt)
    doc = orjson.loads((await api.http.get("/openapi.json")).content)
    for path in ("/api/v1/me", "/api/v1/auth/login", "/healthz"):
        declared = {m.upper() for m in doc["paths"][path]}
        for method in ("PUT", "DELETE", "POST", "PATCH", "OPTIONS"):
            if method in declared:
                continue
            reply = await api.request(method, path)
            assert_error(reply, 405, "method_not_allowed")
            assert set(reply.headers["allow"].split(", ")) == declared, (method, path, reply.headers["allow"])


async def test_swagger_ui_and_every_asset_it_references_load_from_this_server(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        page = await client.get("/docs", headers={"Accept": "application/msgpack"})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        html = page.text
        # Nothing from another host: no absolute URL at all in what the page loads.
        refs = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html) + re.findall(r"""url:\s*['"]([^'"]+)['"]""", html)
        assert refs, html
        assert not [r for r in refs if "//" in r], refs
        expected_types = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}
        for ref in refs:
            asset = await client.get(ref)
            assert asset.status_code == 200, ref
            kind = next(v for k, v in expected_types.items() if ref.endswith(k))
            assert kind in asset.headers["content-type"], (ref, asset.headers["content-type"])
            assert len(asset.content) > 100, ref
        bundle = await client.get(next(r for r in refs if r.endswith("swagger-ui-bundle.js")))
        assert b"SwaggerUIBundle" in bundle.content


@pytest.mark.parametrize("accept", ["application/msgpack", "application/vnd.msgpack", "application/x-msgpack"])
async def test_every_answer_of_a_story_is_in_the_negotiated_encoding(
    make_api: Callable[..., Api], register: Any, accept: str
) -> None:
    api = make_api("msgpack")
    user = await register(api)
    for reply in (
        await api.get("/api/v1/me", headers={"Accept": accept}),
        await api.patch("/api/v1/me", {"bio": "hello"}, headers={"Accept": accept}),
        await api.get("/api/v1/nope", headers={"Accept": accept}),
    ):
        assert reply.headers["content-type"] == "application/msgpack"
        assert isinstance(reply.body, dict)
    me = await api.http.get("/api/v1/me", headers={**api.headers(), "Accept": accept})
    assert msgpack.unpackb(me.content)["username"] == user["username"]
