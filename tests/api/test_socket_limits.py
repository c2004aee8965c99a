"""Sockets per user are capped across both gateway processes (WS_MAX_SOCKETS_PER_USER, 20 by default): the
user's shard sees every socket of the user, and one more is refused before the upgrade with 429
``too_many_sockets`` (details.limit, Retry-After), leaving nothing registered (3,311 were accepted before)."""

from __future__ import annotations

from typing import Any

import orjson
import websockets
from websockets.exceptions import InvalidStatus

from tests.api.realtime_helpers import socket_on_gateway
from tests.conftest import Server
from tests.support import WsClient, wait_until


async def _refused(base_url: str, token: str) -> InvalidStatus | None:
    url = base_url.replace("http://", "ws://") + "/api/v1/ws"
    try:
        conn = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"})
    except InvalidStatus as exc:
        return exc
    await conn.close()
    raise AssertionError("the socket was accepted")


async def _connect_when_room(base_url: str, token: str) -> WsClient:
    """A socket, retrying while the shard still counts a socket that has just closed (its close is on the way)."""

    async def attempt() -> WsClient | None:
        try:
            return await WsClient.connect(base_url, token)
        except InvalidStatus as exc:
            if exc.response.status_code != 429:
                raise
            return None

    return await wait_until(attempt, timeout=15, interval=0.1)


async def test_a_user_holds_at_most_20_sockets_across_both_gateways_and_the_21st_is_refused_before_the_upgrade(
    server: Server, make_api: Any, register: Any
) -> None:
    api = make_api("json")
    await register(api)
    token = str(api.token)
    # Shards killed by an earlier story must be back: a socket opened while its shard restarts is accepted
    # unregistered (the heartbeat registers it later), so the cap could not count it yet.
    assert (await api.get("/api/v1/_test/shards")).status == 200
    first, gateway = await socket_on_gateway(server.base_url, token)
    other, other_gateway = await socket_on_gateway(server.base_url, token, avoid=gateway)
    sockets = [first, other]
    while len(sockets) < 20:  # the tries socket_on_gateway closed may still count for a moment
        sockets.append(await _connect_when_room(server.base_url, token))
    assert {gateway, other_gateway} <= {await ws.gateway() for ws in sockets}

    refused = await _refused(server.base_url, token)
    assert refused is not None
    assert refused.response.status_code == 429
    assert refused.response.headers["retry-after"].isdigit()
    error = orjson.loads(refused.response.body or b"{}")["error"]
    assert error["code"] == "too_many_sockets"
    assert error["details"]["limit"] == 20

    # The refusal left nothing behind: every socket still works, and closing one makes room for exactly one.
    for ws in sockets:
        assert (await ws.request("ping"))["ok"]
    await sockets.pop().close()
    sockets.append(await _connect_when_room(server.base_url, token))
    assert (await sockets[-1].request("ping"))["ok"]
    assert (await _refused(server.base_url, token)) is not None
    for ws in sockets:
        await ws.close()
