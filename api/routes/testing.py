"""Test-only routes, mounted only when APP_ENV=test (they do not exist in any other deployment).

They give the realtime tests an event source before the features that emit real events exist, and a way to
find the shard processes to kill. Events go through the real write path: outbox row committed, then delivery.
They also say which worker process served a request (``/whoami``, and the ``X-Worker-Pid`` header that
``WorkerPidMiddleware`` adds to every response in APP_ENV=test), which /healthz and /readyz no longer show.
"""

from __future__ import annotations

import asyncio
import os

from fastapi import APIRouter, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from actors.runtime.topology import describe_shards
from api.contract import body
from api.deps import Ctx
from api.responses import Encoded, encoded
from api.test_events import EmitEvents
from domain.errors import Unavailable

router = APIRouter(prefix="/_test", tags=["test-only"], include_in_schema=False)


@router.post("/events")
async def emit(request: Request, ctx: Ctx, payload: EmitEvents = body(EmitEvents)) -> Encoded:
    assert ctx.test_events is not None, "made whenever these routes are mounted"
    recipients = [int(r) for r in payload.recipients]
    result = await ctx.test_events.emit(recipients, payload.count, payload.note, publish=payload.publish)
    return encoded(request, result)


class WorkerPidMiddleware:
    """APP_ENV=test only: ``X-Worker-Pid`` on every HTTP response, so a test can tell which worker served it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.pid = str(os.getpid()).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message, headers=[*message.get("headers", []), (b"x-worker-pid", self.pid)])
            await send(message)

        await self.app(scope, receive, tagged)


@router.get("/whoami")
async def whoami(request: Request) -> Encoded:
    """The pid of the worker process that served this request."""
    return encoded(request, {"pid": os.getpid()})


@router.get("/shard_ping")
async def shard_ping(request: Request, ctx: Ctx) -> Encoded:
    """This worker's pid and user shard 0's ping (its pid and call counter)."""
    return encoded(request, {"pid": os.getpid(), "shard": await ctx.users.ping(0)})


@router.get("/shards")
async def shards(request: Request, ctx: Ctx) -> Encoded:
    """Every shard's ping; 503 while one of them cannot answer (its node died and it is restarting)."""
    try:
        async with asyncio.timeout(10):
            pings = await asyncio.gather(*(ctx.users.ping(k) for k in range(len(ctx.users.shards))))
    except Exception as exc:
        raise Unavailable("A shard is restarting; try again.", retry_after=1) from exc
    return encoded(request, list(pings))


@router.get("/chat_shards")
async def chat_shards(request: Request, ctx: Ctx) -> Encoded:
    """Every ChatShard's ping (its pid, for the tests that kill one); 503 while one cannot answer."""
    try:
        async with asyncio.timeout(10):
            pings = await asyncio.gather(*(ctx.chats.ping(k) for k in range(len(ctx.chats.shards))))
    except Exception as exc:
        raise Unavailable("A shard is restarting; try again.", retry_after=1) from exc
    return encoded(request, list(pings))


@router.get("/shard_names")
async def shard_names(request: Request, ctx: Ctx) -> Encoded:
    """This process's shard fingerprint and shard names, and every named actor of its Ray namespace."""
    return encoded(request, describe_shards(ctx.services.settings))
