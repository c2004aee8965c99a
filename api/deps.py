"""FastAPI dependencies: the app context, the caller's identity and IP, rate limits."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from actors.runtime.client import ShardClient
from actors.runtime.services import Services
from api.ratelimit import RateLimiter
from api.reads.explore import Explorer
from api.reads.feed import FeedReader
from api.reads.posts import PostReader
from api.reads.search import Search
from api.reads.suggestions import Suggester
from api.response_cache import FeedPages, ResponseCache
from api.test_events import TestEvents
from api.uploads import MediaService
from domain.errors import RateLimited, Unauthenticated
from domain.tokens import Principal


@dataclass
class AppContext:
    """Everything a route may use, made once per api process in the lifespan (api/app.py): the composition root."""

    services: Services
    limiter: RateLimiter
    users: ShardClient  # the UserShards: ops of users (domain/ops.py UserOp)
    chats: ShardClient  # the ChatShards: ops of chats (ChatOp)
    test_events: TestEvents | None  # APP_ENV=test only (api/test_events.py)
    media: MediaService
    planned_pool: asyncpg.Pool  # statements planned for their parameters: search, recommendations (storage/db.py)
    search: Search
    feed_reader: FeedReader
    explorer: Explorer
    suggester: Suggester
    response_cache: ResponseCache
    feed_pages: FeedPages
    media_signer: Any  # signs media URLs of chats (storage/media/backends.py url_signer)
    posts: PostReader  # posts for readers, through the process's caches


def ctx_of(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


async def get_ctx(request: Request) -> AppContext:
    """The dependency: async, because FastAPI runs a plain ``def`` dependency in its thread pool (a thread hop
    per request)."""
    return ctx_of(request)


Ctx = Annotated[AppContext, Depends(get_ctx)]

_bearer = HTTPBearer(
    auto_error=False, description="Access token from /auth/login, /auth/signup/complete or /auth/refresh"
)


def client_ip(request: HTTPConnection) -> str:
    """The caller's IP (of a request or a socket handshake); ``X-Forwarded-For`` is believed only from
    TRUSTED_PROXIES."""
    peer = request.client.host if request.client else ""
    ctx: AppContext = request.app.state.ctx
    trusted = ctx.services.settings.trusted_proxies
    if not trusted or not _in(peer, trusted):
        return peer
    forwarded = request.headers.get("x-forwarded-for", "")
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop
    return peer


def _in(ip: str, networks: tuple[str, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(net, strict=False) for net in networks)


async def authenticate(ctx: AppContext, token: str) -> Principal:
    principal = ctx.services.tokens.decode_access(token)
    if await ctx.services.is_session_denied(principal.session_id):
        raise Unauthenticated("This session has ended; log in again.", reason="session_revoked")
    return principal


async def optional_user(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal | None:
    if creds is None:
        if request.headers.get("authorization"):
            raise Unauthenticated("Use 'Authorization: Bearer <access token>'.", reason="invalid_token")
        return None
    checked: Principal | None = getattr(request.state, "writer", None)
    if checked is not None:  # a write: its session was checked with its rate limit (``_limit_writes``)
        return checked
    return await authenticate(ctx_of(request), creds.credentials)


async def require_user(principal: Annotated[Principal | None, Depends(optional_user)]) -> Principal:
    if principal is None:
        raise Unauthenticated()
    return principal


async def token_user(request: Request) -> Principal:
    """The caller of a hot read, in one dependency: the bearer token's signature, expiry and claims are checked
    here, but not its session, which the route must check in the same query as its read (``GET /me`` does:
    storage/users.py ``get_user_of_session``), saving the denylist round trip. Sessions are revoked in
    PostgreSQL before any logout, reset or reuse answer, so that check is as immediate as the denylist."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthenticated()
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Use 'Authorization: Bearer <access token>'.", reason="invalid_token")
    return ctx_of(request).services.tokens.decode_access(token.strip())


async def optional_token_user(request: Request) -> Principal | None:
    """``token_user`` for reads open to anonymous callers: None without an Authorization header. The route checks
    the session in its own query (``PostReader.views(session_id=...)``)."""
    if not request.headers.get("authorization"):
        return None
    return await token_user(request)


# For routes calling ``token_user`` themselves: the OpenAPI security requirement ``User`` would have added.
BEARER_SECURITY: dict[str, Any] = {"security": [{"HTTPBearer": []}]}

User = Annotated[Principal, Depends(require_user)]
MaybeUser = Annotated[Principal | None, Depends(optional_user)]


async def _limit_writes(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """A write's session check and its rate limit in one Redis round trip (api/ratelimit.py ``hit_session``). A
    route's own dependencies run before its parameters', so its ``User`` finds the caller checked here."""
    if creds is None:
        if request.headers.get("authorization"):
            raise Unauthenticated("Use 'Authorization: Bearer <access token>'.", reason="invalid_token")
        raise Unauthenticated()
    ctx = ctx_of(request)
    principal = ctx.services.tokens.decode_access(creds.credentials)
    revoked_key = ctx.services.keys.revoked_session(principal.session_id)
    if await ctx.limiter.hit_session("write", f"user:{principal.user_id}", revoked_key):
        raise Unauthenticated("This session has ended; log in again.", reason="session_revoked")
    request.state.writer = principal


WriteLimit = Depends(_limit_writes)


def limit(bucket: str, per_route: Mapping[str, str] | None = None) -> Any:
    """Dependency: count this request against ``bucket`` for the caller's IP; ``per_route`` maps route names
    (the endpoint function's name) to a bucket of their own, for a router-wide dependency."""
    own = dict(per_route or {})

    async def check(request: Request) -> None:
        ctx = ctx_of(request)
        route = request.scope.get("route")
        chosen = own.get(getattr(route, "name", ""), bucket) if own else bucket
        await ctx.limiter.hit(chosen, client_ip(request))

    return Depends(check)


async def limit_socket_handshake(websocket: HTTPConnection) -> RateLimited | None:
    """Count a socket handshake against ``ws_connect`` for the caller's IP, before any other work (even before
    the token check, so refused handshakes count too). Returns the 429 to refuse it with, or None."""
    ctx: AppContext = websocket.app.state.ctx
    try:
        await ctx.limiter.hit("ws_connect", client_ip(websocket))
    except RateLimited as err:
        return err
    return None
