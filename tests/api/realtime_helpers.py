"""Helpers for the realtime stories: sockets on chosen gateway processes, test events."""

from __future__ import annotations

from typing import Any

from tests.support import Api, WsClient


async def socket_on_gateway(
    base_url: str,
    token: str,
    *,
    want: str | None = None,
    avoid: str | None = None,
    fmt: str = "json",
    tries: int = 40,
    **kw: Any,
) -> tuple[WsClient, str]:
    """Open sockets until one lands on the wanted (or not on the avoided) gateway process."""
    for _ in range(tries):
        ws = await WsClient.connect(base_url, token, fmt=fmt, **kw)
        gateway = await ws.gateway()
        if (want is None or gateway == want) and (avoid is None or gateway != avoid):
            return ws, gateway
        await ws.close()
    raise AssertionError("could not reach the wanted gateway process")


async def emit(api: Api, user_id: str, count: int = 1, *, publish: bool = True, note: str = "") -> list[str]:
    """Deliver ``count`` test events to one user through the real outbox + delivery path; their ids."""
    reply = await api.post(
        "/api/v1/_test/events", {"recipients": [user_id], "count": count, "publish": publish, "note": note}
    )
    assert reply.status == 200, reply.body
    if not publish:
        return list(reply.body["outbox_ids"])
    return list(reply.body["event_ids"][user_id])


def stream_pos(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq)
