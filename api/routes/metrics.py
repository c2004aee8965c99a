"""``GET /metrics``: Prometheus text for the networks of ``METRICS_ALLOW`` only; anyone else gets the 404 of a
path that does not exist (the API.md error shape, nothing that says the endpoint is there). What it shows is read
at scrape time by api/reads/metrics.py.

The caller checked is the client address as ``client_ip`` (api/deps.py) works it out: the socket peer, or, when
the peer is one of ``TRUSTED_PROXIES``, the nearest untrusted ``X-Forwarded-For`` hop. So behind a reverse proxy
on the same machine (a loopback peer) an outside caller is still refused under the default loopback-only
``METRICS_ALLOW``, while a Prometheus that scrapes the server directly is checked by its own address; a caller
that is not a trusted proxy cannot claim another address with ``X-Forwarded-For``.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from typing import Any

from fastapi import APIRouter, Request, Response

from api.contract import operation
from api.deps import AppContext, client_ip
from api.reads.metrics import read_state, render
from domain.errors import NotFound

router = APIRouter()

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.cache
def networks(spec: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(net, strict=False) for net in spec)


def is_allowed(ip: str, allow: tuple[str, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return any(addr in net for net in networks(tuple(allow)))


def _exposition() -> dict[str, Any]:
    """The operation: a text body (Prometheus's text format, or OpenMetrics when ``Accept`` asks for it), not a wire
    struct; 404 to a caller outside ``METRICS_ALLOW``."""
    made = operation("getMetrics", description="The metrics", errors=(404,))
    text = {"schema": {"type": "string"}}
    made["openapi_extra"]["responses"]["200"]["content"] = {"text/plain": text, "application/openmetrics-text": text}
    return made


@router.get("/metrics", **_exposition(), response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this server (its workers, the outbox, the shards), to the networks of
    `METRICS_ALLOW` only; anyone else gets 404."""
    ctx: AppContext = request.app.state.ctx
    if not is_allowed(client_ip(request), ctx.services.settings.metrics_allow):
        raise NotFound()
    state = await read_state(ctx)
    body, content_type = await asyncio.to_thread(render, state, request.headers.get("accept", ""))
    return Response(body, media_type=content_type)
