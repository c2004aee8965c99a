"""Helpers for the realtime stories: sockets on chosen gateway processes, test events."""

from __future__ import annotations

import base64
import os
import socket
import struct
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


def raw_socket(base_url: str, token: str, since: str | None = None) -> socket.socket:
    """A bare TCP WebSocket client: handshake done, nothing read yet. Lets a test vanish without a close frame."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    path = "/api/v1/ws" + (f"?since={since}" if since else "")
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise AssertionError("connection closed during the handshake")
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def reset(sock: socket.socket) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), unread data left in the buffer: no close frame."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
