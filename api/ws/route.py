"""``GET /api/v1/ws``: the WebSocket endpoint. Handshake checks, replay, then one read loop per socket.

Per-frame work stays off FastAPI/pydantic: frames are decoded with msgspec (domain/events.py) and answered
with prebuilt acks. Handshake failures are refused before the upgrade with an HTTP status in the API.md error
shape (401 unauthenticated, 403 origin, 400 bad request, 429 too many handshakes or ``too_many_sockets``, 503
overloaded or a dependency unreachable, with Retry-After); later failures close with the codes of
``domain.events.CLOSE_CODES`` (1013 when a dependency fails, so the client retries with ``since``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import msgspec
from fastapi import APIRouter
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from api.codec import encode, error_body
from api.deps import AppContext, authenticate, limit_socket_handshake
from api.logs import request_id_var
from api.metrics import WS_FRAMES_IN
from api.overload import as_unavailable
from api.ws.admission import RETRY_AFTER_S, HandshakeGate
from api.ws.connection import CLOSE_TIMEOUT_S, Conn
from api.ws.gateway import Gateway
from domain import events, rules
from domain.chat import path_id, send_op
from domain.errors import DomainError, MalformedBody, NotFound, Unauthenticated, Unavailable, ValidationFailed
from domain.errors import Forbidden as ForbiddenError
from domain.ops import GetPresence, ProgressKind, ReportProgress, SetTyping
from storage import posts as post_store
from storage import users as user_store
from storage.outage import OUTAGES
from storage.streams import is_stream_id

log = logging.getLogger("i9lyfe.ws")
router = APIRouter()

MAX_TOPICS = 256
_handshakes = HandshakeGate()  # in flight in this process, from the first check until the upgrade or refusal


def _origin_allowed(ctx: AppContext, origin: str | None) -> bool:
    """Browsers send Origin; only configured origins (and our own public origin) may open a socket."""
    if origin is None:
        return True  # native clients send no Origin and carry no ambient credentials
    settings = ctx.services.settings
    own = urlsplit(settings.public_base_url)
    allowed = {*settings.ws_origins, *settings.cors_origins, f"{own.scheme}://{own.netloc}"}
    return origin.rstrip("/") in {o.rstrip("/") for o in allowed} or "*" in settings.ws_origins


def _pick_subprotocol(websocket: WebSocket) -> str | bool | None:
    """The first offered subprotocol we speak; None when none offered; False when none of the offered."""
    offered = websocket.scope.get("subprotocols") or []
    if not offered:
        return None
    for name in offered:
        if name in events.SUBPROTOCOLS:
            return str(name)
    return False


async def _deny(websocket: WebSocket, err: DomainError) -> None:
    body = encode(error_body(err, request_id_var.get()), False)
    retry_after = getattr(err, "retry_after", None)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    response = Response(body, status_code=err.http_status, media_type="application/json", headers=headers)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:  # servers without the denial extension: a close before accept is an HTTP 403 (no close frame)
        await websocket.close()


@router.websocket("/api/v1/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    """Before the upgrade, overload is refused with 503 and Retry-After: too many handshakes in flight here,
    or a pool, Redis, PostgreSQL or the user's shard past its deadline. Open sockets are never touched."""
    if not _handshakes.enter(websocket):
        busy = Unavailable("Too many sockets are connecting; try again shortly.", retry_after=RETRY_AFTER_S)
        await _deny(websocket, busy)
        return
    try:
        await _serve(websocket)
    except Exception as exc:
        shed = as_unavailable(exc)
        if shed is None or websocket.client_state != WebSocketState.CONNECTING:
            raise
        await _deny(websocket, shed)
    finally:
        _handshakes.leave(websocket)


async def _serve(websocket: WebSocket) -> None:
    ctx: AppContext = websocket.app.state.ctx
    gateway: Gateway = websocket.app.state.gateway
    if not _origin_allowed(ctx, websocket.headers.get("origin")):
        await _deny(websocket, ForbiddenError("This origin may not open a socket.", code="origin_not_allowed"))
        return
    if gateway.draining:  # shutting down (api/ws/drain.py): another gateway, or this one restarted, takes it
        await _deny(websocket, Unavailable("This server is restarting; reconnect shortly.", retry_after=1))
        return
    if (refused := await limit_socket_handshake(websocket)) is not None:  # handshakes per IP: 429 + Retry-After
        await _deny(websocket, refused)
        return
    protocol = _pick_subprotocol(websocket)
    if protocol is False:
        await _deny(websocket, MalformedBody("Offer the subprotocol i9.json or i9.msgpack.", code="bad_subprotocol"))
        return
    token = None
    header = websocket.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token = header[7:].strip()
    token = token or websocket.query_params.get("access_token")
    try:
        if not token:
            raise Unauthenticated()
        principal = await authenticate(ctx, token)
    except DomainError as err:
        await _deny(websocket, err)
        return
    since = websocket.query_params.get("since")
    if since is not None and not is_stream_id(since):
        await _deny(websocket, ValidationFailed({"since": "must be an event id like 1732000000000-0"}))
        return

    fmt = events.SUBPROTOCOLS[protocol] if isinstance(protocol, str) else "json"
    conn = Conn(websocket, principal.user_id, principal.session_id, fmt, principal.expires_at)
    try:  # the user's shard counts every socket of the user, on every gateway: one over the cap is a 429 here
        await gateway.attach(conn)
    except Unavailable as err:  # shard restarting: the gateway heartbeat registers the socket shortly
        OUTAGES.note("a socket is open before its shard registered it (the heartbeat will)", err, log)
    except DomainError as err:  # refused: attach left nothing registered
        await _deny(websocket, err)
        return
    try:
        await websocket.accept(subprotocol=protocol if isinstance(protocol, str) else None)
    except BaseException:
        await gateway.detach(conn)
        raise
    _handshakes.leave(websocket)
    conn.start_writer()
    expiry = asyncio.get_running_loop().call_later(
        max(0.0, principal.expires_at - time.time()),
        conn.close_soon,
        events.CLOSE_UNAUTHENTICATED,
        "access token expired; reconnect with a fresh token and since",
    )
    conn.handler = asyncio.current_task()
    try:
        await gateway.attach_feed(conn)
        await gateway.start_stream(conn, since)
        await _read_loop(ctx, gateway, conn)
    except WebSocketDisconnect:
        pass
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if not conn.aborted or task is None:
            raise  # shutdown: let it through
        task.uncancel()  # we stopped a handler whose peer vanished: clean up below
    except Exception as exc:
        if as_unavailable(exc) is not None:  # overload or a dependency down: the client retries with since
            conn.close_soon(events.CLOSE_TRY_AGAIN, "server busy; reconnect with since after a short delay")
        else:
            log.exception("socket failed")
            conn.close_soon(events.CLOSE_INTERNAL, "internal error")
    finally:
        expiry.cancel()
        conn.handler = None
        await gateway.detach(conn)
        await conn.stop_writer()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await websocket.close()


async def _read_loop(ctx: AppContext, gateway: Gateway, conn: Conn) -> None:
    while not conn.closed:
        message = await conn.ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        raw: bytes | str | None = message.get("bytes")
        if raw is None:
            raw = message.get("text")
        if raw is None:
            continue
        WS_FRAMES_IN.inc()
        if not conn.allow_frame():
            ref = events.salvage_ref(raw, conn.fmt)
            conn.send_data("ack", events.ack_error(ref, "rate_limited", "Too many frames; slow down."))
            continue
        try:
            frame = events.decode_client_frame(raw, conn.fmt)
            data = events.decode_action(frame)
            result, follow_up = await _act(ctx, gateway, conn, frame.action, data)
        except events.FrameError as err:
            conn.send_data("ack", err.ack())
            continue
        except DomainError as err:
            conn.send_data("ack", events.ack_error(frame.ref, err.code, err.message, err.details or None))
            continue
        conn.send_data("ack", events.ack_ok(frame.ref, result))
        if follow_up is not None:
            conn.send_data(*follow_up)


Reply = tuple[dict[str, Any], tuple[str, dict[str, Any]] | None]


async def _act(ctx: AppContext, gateway: Gateway, conn: Conn, action: str, data: Any) -> Reply:
    """Run one action; returns the ack result and an optional event to send right after the ack."""
    if action == "ping":
        return {"gateway": gateway.id}, None
    if action in ("subscribe", "unsubscribe"):
        kind, _, name = data.topic.partition(":")
        channel = await _resolve_topic(ctx, kind, name)
        if action == "unsubscribe":
            await gateway.unsubscribe(conn, channel)
            return {"topic": data.topic}, None
        if channel not in conn.topics and len(conn.topics) >= MAX_TOPICS:
            raise ValidationFailed({"topic": f"at most {MAX_TOPICS} subscriptions per socket"})
        await gateway.subscribe(conn, channel)
        if kind == "presence":
            snapshot = await ctx.users.call(GetPresence(user_id=int(channel.rsplit(":", 1)[1])))
            version = int(snapshot.pop("version", 0))
            if not conn.presence_snapshot(channel, version):
                return {"topic": data.topic}, None  # a newer live transition already went out
            return {"topic": data.topic}, ("presence", snapshot)
        return {"topic": data.topic}, None
    if action.startswith("chat."):
        return await _chat_action(ctx, conn, action, data), None
    raise DomainError(f"The action {action!r} is not available yet.", code="not_implemented")


async def _chat_action(ctx: AppContext, conn: Conn, action: str, data: Any) -> dict[str, Any]:
    """A chat action through the chat's ChatShard entity (the same ops as the HTTP routes); the ack's result is
    the op's answer (a wire struct: the Message, the typing state, the receipt) as plain data for the frame."""
    chats = ctx.chats
    chat_id = path_id(data.chat_id, "chat")
    result: Any
    if action == "chat.send":
        body = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not None and k != "chat_id"}
        result, _created = await chats.call(send_op(chat_id, conn.user_id, body))
    elif action == "chat.typing":
        result = await chats.call(SetTyping(chat_id=chat_id, user_id=conn.user_id, typing=data.typing))
    else:
        kind: ProgressKind = "delivered" if action == "chat.delivered" else "read"
        result = await chats.call(ReportProgress(chat_id=chat_id, user_id=conn.user_id, kind=kind, seq=data.seq))
    plain: dict[str, Any] = msgspec.to_builtins(result)
    return plain


async def _resolve_topic(ctx: AppContext, kind: str, name: str) -> str:
    keys = ctx.services.keys
    if kind == "presence":
        if not name:
            raise ValidationFailed({"topic": "must be presence:<username> or post:<id>"})
        if not rules.USERNAME_RE.match(name.lower()):
            raise NotFound(f"No user {name[:40]!r}.")  # no such username can exist: never ask the database
        row = await user_store.find_user_by_username(ctx.services.pool, name)
        if row is None:
            raise NotFound(f"No user {name!r}.")
        return keys.presence_channel(int(row["id"]))
    if kind == "post":
        if not name.isdigit() or len(name) > 19 or not 0 < int(name) < (1 << 63):
            raise NotFound(f"No post {name[:40]!r}.")
        if not await post_store.post_exists(ctx.services.pool, int(name)):
            raise NotFound(f"No post {name!r}.")
        return keys.post_channel(int(name))
    raise ValidationFailed({"topic": "must be presence:<username> or post:<id>"})
