"""Every response says ``X-Content-Type-Options: nosniff`` (the codec's own errors and socket refusals too);
every /auth response, and so every token response, says ``Cache-Control: no-store`` and ``Pragma: no-cache``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.conftest import Server
from tests.support import Api, Reply, fresh_ip

AUTH = "/api/v1/auth"


def assert_no_store(reply: Reply | httpx.Response) -> None:
    assert reply.headers.get("cache-control") == "no-store", dict(reply.headers)
    assert reply.headers.get("pragma") == "no-cache", dict(reply.headers)
    assert reply.headers.get("x-content-type-options") == "nosniff", dict(reply.headers)


async def test_token_responses_are_never_stored(make_api: Callable[..., Api], register: Any) -> None:
    api = make_api()
    user = await register(api)
    login = await api.post(f"{AUTH}/login", {"login": user["username"], "password": user["password"]})
    refreshed = await api.post(f"{AUTH}/refresh", {"refresh_token": login.body["tokens"]["refresh_token"]})
    assert login.status == refreshed.status == 200
    assert_no_store(login)
    assert_no_store(refreshed)
    # signup/complete (inside ``register``) too, and the auth errors.
    wrong = await api.post(f"{AUTH}/login", {"login": user["username"], "password": "Wrong-pass-1"})
    assert wrong.status == 401
    assert_no_store(wrong)
    msgpack_api = make_api("msgpack")
    again = await msgpack_api.post(f"{AUTH}/login", {"login": user["email"], "password": user["password"]})
    assert again.status == 200
    assert_no_store(again)


async def test_every_response_says_nosniff(server: Server, make_api: Callable[..., Api], register: Any) -> None:
    api = make_api()
    await register(api)
    replies = [
        await api.get("/api/v1/me"),
        await api.get("/healthz"),
        await api.get("/api/v1/nope"),  # 404 from the router
        await api.post(f"{AUTH}/signup", raw=b"x" * 70_000, headers={"Content-Type": "application/json"}),  # 413
        await api.post(f"{AUTH}/signup", raw=b"{}", headers={"Content-Type": "text/plain"}),  # 415 (codec)
    ]
    assert [r.status for r in replies] == [200, 200, 404, 413, 415]
    for reply in replies:
        assert reply.headers.get("x-content-type-options") == "nosniff", (reply.status, dict(reply.headers))
    assert "cache-control" not in replies[0].headers  # no-store is for /auth, not every read

    url = server.base_url.replace("http://", "ws://") + "/api/v1/ws"
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url, additional_headers={"X-Forwarded-For": fresh_ip()}, open_timeout=10)
    assert refused.value.response.status_code == 401
    assert refused.value.response.headers.get("x-content-type-options") == "nosniff"
