"""A one-process chat server without Ray: the floor benchmarks/chat_latency.py measures the real one against.

ONE uvicorn process (uvloop, httptools, websockets-sansio, no compression: as ``python -m api``), no Ray, serving

* ``GET /api/v1/ws`` (subprotocol ``i9.json``): the ``ping`` action (ack result ``{"gateway": "baseline"}``) and
  ``chat.send`` frames as the api takes them (``{"ref", "action": "chat.send", "data": {chat_id, client_id, type:
  "text", text}}``), one at a time per socket as the api's read loop runs them, each answered with an ``ack``;
* ``POST /api/v1/chats/{id}/messages``: the same send over HTTP (201 with the message);
* ``GET /readyz``.

A send: the sender must be a member (the chat's members and ``last_seq`` are loaded once: storage/chats.py
``load_chat``); then, under the chat's lock (the single writer, as a ChatShard entity), one transaction with the
same statement the ChatShard runs (storage/chats.py ``append_message``: the seq guard ``UPDATE chats ... WHERE
last_seq = <held>``, the insert, the members' chat lists touched, the sender's summary); then the same stream
append (storage/streams.py ``Streams.append``: the members' streams,
idempotent per event, one round trip) and one ``PUBLISH`` of the event on this process's channel, whose
subscriber (the same process) hands it to the members' open sockets as the gateways frame it (``{"id": <stream
entry id>, "type": "chat.message", "data": <the message>}``). Left out, against the ChatShard: the outbox row, the
Ray hop, the group commit's savepoint and the routes (the baseline's one process holds every socket). Sockets are
authenticated by the access token's signature and expiry (domain/tokens.py), as the api checks them.

It runs with the api's environment (storage/config.py ``load_settings``: DATABASE_URL, REDIS_URL, REDIS_PREFIX,
JWT_SECRET, HOST, PORT) and leases its own id node (storage/redis.py ``NodeLease``). chat_latency.py starts it
(``--baseline``); by hand:

    DATABASE_URL=... REDIS_URL=... REDIS_PREFIX=... JWT_SECRET=... PORT=8099 \
        .venv/bin/python benchmarks/chat_baseline.py
"""

from __future__ import annotations

import os
import sys

# benchmarks/actors.py would shadow the `actors` package: import from the repository root instead.
if os.path.dirname(os.path.realpath(__file__)) in sys.path:
    sys.path.remove(os.path.dirname(os.path.realpath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgpack
import orjson
import uvicorn
from fastapi import FastAPI, Request, WebSocket
from starlette.responses import Response
from starlette.websockets import WebSocketDisconnect

from domain.errors import DomainError, NotFound, Unauthenticated
from domain.tokens import TokenService
from storage import chats as chat_store
from storage import db, ids
from storage import redis as rstore
from storage.config import Settings, load_settings
from storage.streams import Streams

GATEWAY = "baseline"
EVENT = "chat.message"
QUEUE_MAX = 1024  # frames waiting for one socket's writer


@dataclass
class Chat:
    chat_id: int
    last_seq: int
    members: dict[int, str]  # user id -> username
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Socket:
    """One open socket: frames go out through a queue and one writer task, as the api's ``Conn``."""

    def __init__(self, ws: WebSocket, user_id: int) -> None:
        self.ws = ws
        self.user_id = user_id
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_MAX)
        self.writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while (frame := await self.queue.get()) is not None:
            await self.ws.send_text(frame.decode())

    def send(self, frame: bytes) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a benchmark client keeps up; the api would close it
            self.queue.put_nowait(frame)

    async def stop(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer, timeout=2)


class Baseline:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = rstore.Keys(settings.redis_prefix)
        self.channel = self.keys("baseline", "gw", os.getpid())
        self.tokens = TokenService(settings.jwt_secret, settings.jwt_issuer, settings.access_ttl_s)
        self.chats: dict[int, Chat] = {}
        self.sockets: dict[int, set[Socket]] = {}
        self.pool: asyncpg.Pool
        self.redis: Any
        self.streams: Streams

    async def start(self) -> None:
        self.redis = rstore.create_client(self.settings.redis_url, max_connections=64)
        self.lease = rstore.NodeLease(self.redis, self.keys, ids.default_generator())
        await self.lease.acquire()
        self.lease.start_renewing()
        self.pool = await db.create_pool(self.settings.database_url, 2, 20)
        self.streams = Streams(self.redis, self.keys)
        self.pubsub = self.redis.pubsub()
        await self.pubsub.subscribe(self.channel)
        self.subscriber = asyncio.get_running_loop().create_task(self._subscribe())

    async def stop(self) -> None:
        self.subscriber.cancel()
        with contextlib.suppress(BaseException):
            await self.subscriber
        with contextlib.suppress(Exception):
            await self.pubsub.aclose()
        await self.pool.close()
        await self.lease.release()
        await self.redis.aclose()

    # ------------------------------------------------------------ send

    async def chat(self, chat_id: int) -> Chat:
        chat = self.chats.get(chat_id)
        if chat is None:
            rows = await chat_store.load_chat(self.pool, chat_id)
            if not rows:
                raise NotFound("No such chat.")
            chat = self.chats.setdefault(
                chat_id, Chat(chat_id, int(rows[0]["last_seq"]), {int(r["user_id"]): r["username"] for r in rows})
            )
        return chat

    async def send(self, user_id: int, chat_id: int, client_id: str, text: str) -> dict[str, Any]:
        chat = await self.chat(chat_id)
        if user_id not in chat.members:
            raise NotFound("No such chat.")
        async with chat.lock:
            now = dt.datetime.now(dt.UTC)
            message_id = ids.new_id()
            for attempt in (1, 2):
                async with db.transaction(self.pool) as conn:
                    appended = await chat_store.append_message(
                        conn,
                        chat.last_seq,
                        id=message_id,
                        chat_id=chat_id,
                        sender_id=user_id,
                        client_id=client_id,
                        type="text",
                        text=text,
                        media_id=None,
                        caption=None,
                        duration_ms=None,
                        reply_to=None,
                        created_at=now,
                    )
                if appended is not None:
                    seq = int(appended["seq"])
                    break
                rows = await chat_store.load_chat(self.pool, chat_id)  # another writer: take its seq, once more
                chat.last_seq = int(rows[0]["last_seq"])
                if attempt == 2:
                    raise RuntimeError("the chat's seq moved under this writer twice")
            chat.last_seq = seq
            data = {
                "id": str(message_id),
                "chat_id": str(chat_id),
                "seq": seq,
                "sender": {"id": str(user_id), "username": chat.members[user_id], "avatar": None},
                "client_id": client_id,
                "type": "text",
                "text": text,
                "media": None,
                "caption": None,
                "duration_ms": None,
                "reply_to": None,
                "reactions": {},
                "deleted": False,
                "created_at": now.isoformat().replace("+00:00", "Z"),
                "edited_at": None,
            }
            recipients = sorted(chat.members)
            (appended,) = await self.streams.append([(message_id, recipients, EVENT, msgpack.packb(data))])
            routes = {str(uid): place.id for uid, place in appended.items()}
            await self.redis.publish(self.channel, orjson.dumps({"routes": routes, "type": EVENT, "data": data}))
        return data

    async def _subscribe(self) -> None:
        """This process's channel: each event to its recipients' sockets here, one frame per recipient."""
        async for message in self.pubsub.listen():
            if message.get("type") != "message":
                continue
            event = orjson.loads(message["data"])
            for uid, event_id in event["routes"].items():
                sockets = self.sockets.get(int(uid))
                if sockets:
                    frame = orjson.dumps({"id": event_id, "type": event["type"], "data": event["data"]})
                    for socket in sockets:
                        socket.send(frame)


def create_app(settings: Settings) -> FastAPI:
    baseline = Baseline(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await baseline.start()
        try:
            yield
        finally:
            await baseline.stop()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    def user_of(authorization: str | None) -> int:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthenticated()
        return baseline.tokens.decode_access(authorization[7:].strip()).user_id

    @app.get("/readyz")
    async def readyz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json", headers={"X-Worker-Pid": str(os.getpid())})

    @app.post("/api/v1/chats/{chat_id}/messages")
    async def send_http(chat_id: int, request: Request) -> Response:
        try:
            user_id = user_of(request.headers.get("authorization"))
            body = orjson.loads(await request.body())
            data = await baseline.send(user_id, chat_id, str(body["client_id"]), str(body["text"]))
        except DomainError as err:
            return Response(orjson.dumps({"error": {"code": err.code}}), status_code=err.http_status)
        return Response(orjson.dumps(data), status_code=201, media_type="application/json")

    @app.websocket("/api/v1/ws")
    async def socket(ws: WebSocket) -> None:
        try:
            user_id = user_of(ws.headers.get("authorization"))
        except DomainError:
            await ws.close(code=4401)
            return
        await ws.accept(subprotocol="i9.json" if "i9.json" in ws.scope.get("subprotocols", []) else None)
        conn = Socket(ws, user_id)
        baseline.sockets.setdefault(user_id, set()).add(conn)
        try:
            while True:
                raw = await ws.receive_text()
                frame = orjson.loads(raw)
                ref, action, data = frame.get("ref"), frame.get("action"), frame.get("data") or {}
                try:
                    if action == "ping":
                        result: dict[str, Any] = {"gateway": GATEWAY}
                    elif action == "chat.send":
                        result = await baseline.send(
                            user_id, int(data["chat_id"]), str(data["client_id"]), str(data["text"])
                        )
                    else:
                        raise NotFound(f"no action {action!r} here")
                except DomainError as err:
                    ack = {"ref": ref, "ok": False, "error": {"code": err.code, "message": err.message}}
                else:
                    ack = {"ref": ref, "ok": True, "result": result}
                conn.send(orjson.dumps({"id": None, "type": "ack", "data": ack}))
        except WebSocketDisconnect:
            pass
        finally:
            baseline.sockets[user_id].discard(conn)
            await conn.stop()

    return app


def main() -> None:
    settings = load_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
