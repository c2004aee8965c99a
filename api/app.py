"""Composition root: ``create_app()`` builds the FastAPI app; the lifespan wires storage, Redis and Ray."""

from __future__ import annotations

import gc
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from actors.runtime.client import ShardClient
from actors.runtime.services import Services
from actors.runtime.shards import connect_ray, disconnect_ray, get_or_create_chat_shards, get_or_create_user_shards
from actors.runtime.topology import check_shard_count
from api import errors, metrics_dir, openapi
from api.codec import CodecMiddleware
from api.deps import AppContext
from api.headers import SecurityHeaders
from api.logs import setup_logging
from api.metrics import HttpMetrics, RouteProbe
from api.ratelimit import RateLimiter
from api.reads.explore import Explorer
from api.reads.feed import FeedReader
from api.reads.post_cache import PostCache
from api.reads.posts import PostReader
from api.reads.search import Search
from api.reads.suggestions import Suggester
from api.response_cache import FeedPages, ResponseCache
from api.routes import (
    auth,
    chats,
    engagement,
    explore,
    feed,
    health,
    interests,
    me,
    media,
    notifications,
    posts,
    search,
    testing,
    users,
)
from api.routes import metrics as metrics_route
from api.test_events import TestEvents
from api.uploads import create_media_service
from api.ws import drain
from api.ws import route as ws_route
from api.ws.gateway import Gateway
from storage import db
from storage.config import Settings, load_settings
from storage.live_cache import LiveCache
from storage.media.backends import url_signer

log = logging.getLogger("i9lyfe.app")

API_PREFIX = "/api/v1"

DESCRIPTION = """
i9lyfe: a social-media and realtime chat API.

* Bodies and responses are JSON, or MessagePack with `Content-Type`/`Accept: application/msgpack`.
* Errors are always `{"error": {"code", "message", "details"}}`.
* Authenticate with `Authorization: Bearer <access_token>`.
"""


GC_YOUNG_THRESHOLD = 20_000  # allocations between young collections (Python's default: 700)


def tune_gc() -> None:
    """What the process holds once started (modules, routes, schemas, clients: over 140k objects) is moved out of
    the collector's sight, and young objects are collected less often: each full collection walked all of it and
    paused the event loop for ~75 ms, the tail of the latencies measured here (docs/PERFORMANCE.md 18)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    setup_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await Services.create(settings)
        await check_shard_count(services.pool, settings)  # refuse to start with another K than recorded
        connect_ray(settings)
        users = ShardClient(get_or_create_user_shards(settings), kind="user")
        chats = ShardClient(get_or_create_chat_shards(settings), kind="chat")
        # Search and recommendations run on a small pool whose statements are planned for their parameters.
        planned_pool = await db.create_pool(settings.database_url, 1, 6, extra_settings=db.PLANNED_SETTINGS)
        # New rankings and suggestions on one whose plans are made once per connection (their statements hold their
        # limits and weights: storage/db.py GENERIC_SETTINGS).
        ranking_pool = await db.create_pool(settings.database_url, 1, 4, extra_settings=db.GENERIC_SETTINGS)
        ctx = AppContext(
            services=services,
            limiter=RateLimiter(services.redis, services.keys, settings.rate_limits),
            users=users,
            chats=chats,
            test_events=TestEvents(services) if settings.env == "test" else None,
            media=create_media_service(services),
            planned_pool=planned_pool,
            search=Search(planned_pool),
            feed_reader=FeedReader(services),
            explorer=Explorer(planned_pool, services.redis, services.keys, ranking_pool=ranking_pool),
            suggester=Suggester(planned_pool, services.redis, services.keys, ranking_pool=ranking_pool),
            response_cache=ResponseCache(services.redis),
            feed_pages=FeedPages(services.redis),
            media_signer=url_signer(settings),
            posts=PostReader(settings, PostCache(), LiveCache(services.redis, services.keys)),
        )
        gateway = Gateway(services, users, ctx.posts)
        await gateway.start()
        drain.install(gateway, settings.drain_s)  # SIGTERM/SIGINT: close sockets with 1012 first, then uvicorn's
        app.state.ctx = ctx
        app.state.gateway = gateway
        tune_gc()
        log.info(
            "api ready",
            extra={
                "fields": {"ray": settings.ray_address or "auto", "shards": len(users.shards), "gateway": gateway.id}
            },
        )
        try:
            yield
        finally:
            await gateway.stop()
            ctx.media.close()
            await ranking_pool.close()
            await planned_pool.close()
            await services.close()
            disconnect_ray()
            metrics_dir.forget_worker()  # this worker's open-socket gauge leaves the sum (api/metrics_dir.py)

    app = FastAPI(
        title="i9lyfe API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # api/openapi.py serves Swagger UI with its assets (no CDN)
        redoc_url=None,
        openapi_url=openapi.OPENAPI_URL,
        redirect_slashes=False,  # a redirect would be built from the Host header: an unknown path is a 404
    )
    errors.install(app)
    openapi.install(app)
    app.include_router(health.router)
    app.include_router(metrics_route.router)  # GET /metrics, to METRICS_ALLOW only
    # The router tries routes in this order (no two match the same method and path): the hot reads first, so
    # matching one costs a few routes, not sixty (measured: 60-80 us of matching per request at the end).
    app.include_router(feed.router, prefix=API_PREFIX)
    app.include_router(posts.router, prefix=API_PREFIX)
    app.include_router(engagement.router, prefix=API_PREFIX)
    app.include_router(me.router, prefix=API_PREFIX)
    app.include_router(users.router, prefix=API_PREFIX)
    app.include_router(notifications.router, prefix=API_PREFIX)
    app.include_router(chats.router, prefix=API_PREFIX)
    app.include_router(media.router, prefix=API_PREFIX)
    app.include_router(search.router, prefix=API_PREFIX)
    app.include_router(interests.router, prefix=API_PREFIX)
    app.include_router(explore.router, prefix=API_PREFIX)
    app.include_router(auth.router, prefix=API_PREFIX)
    app.include_router(ws_route.router)
    if settings.env == "test":
        app.include_router(testing.router, prefix=API_PREFIX)
    app.add_middleware(RouteProbe, routes=app.routes)  # innermost: sees the route the router picked
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_credentials=False,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "Accept", "Idempotency-Key", "X-Request-Id"],
            expose_headers=["X-Request-Id", "Retry-After"],
        )
    if settings.env == "test":
        app.add_middleware(testing.WorkerPidMiddleware)
    app.add_middleware(
        CodecMiddleware,
        max_body_bytes=settings.max_body_bytes,
        json_only_paths=frozenset({openapi.OPENAPI_URL}),
        streamed_body=re.compile(API_PREFIX + r"/media/[0-9]{1,20}/upload"),
    )
    app.add_middleware(SecurityHeaders)  # its headers go on the codec's own errors too
    app.add_middleware(HttpMetrics)  # outermost: times every request, the codec's own errors included
    return app
