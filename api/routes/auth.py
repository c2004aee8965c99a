"""/auth: signup by emailed code, login, refresh, logout, password reset. Parse + authenticate only."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request, Response

from api import accounts, presenters
from api.deps import AppContext, Ctx, User, client_ip, limit
from api.responses import Encoded, encoded, no_content
from api.schemas.auth import (
    CodeCheck,
    FlowStarted,
    FlowVerified,
    Login,
    RefreshBody,
    ResetComplete,
    ResetDone,
    ResetStart,
    SignupComplete,
    SignupStart,
    TokensOnly,
    UserWithTokens,
)
from api.schemas.common import error_responses
from domain.errors import DomainError
from domain.ops import CloseSessions

log = logging.getLogger("i9lyfe.auth")
# Per IP: every /auth request in "auth", but token refreshes in their own, generous "auth_refresh" bucket, so
# that many users behind one address (a NAT) keep their sessions while logins from it are limited.
router = APIRouter(prefix="/auth", tags=["auth"], dependencies=[limit("auth", per_route={"refresh": "auth_refresh"})])

CLOSE_SOCKETS_S = 2.0  # the tokens are dead already; a shard this slow does not hold up the answer


def _socket_closer(ctx: AppContext) -> accounts.CloseSockets:
    async def close(user_id: int, session_ids: list[int]) -> None:
        """Best effort: the user's shard tells the gateways to close these sessions' sockets (4401)."""
        try:
            op = CloseSessions(user_id=user_id, session_ids=session_ids)
            await ctx.users.call(op, deadline_s=CLOSE_SOCKETS_S)
        except DomainError as err:
            log.warning(
                "open sockets of revoked sessions not closed",
                extra={"fields": {"user_id": user_id, "sessions": session_ids, "error": err.code}},
            )

    return close


def _started(result: dict[str, Any]) -> dict[str, Any]:
    return {"flow_id": result["flow_id"], "expires_at": presenters.rfc3339(result["expires_at"])}


@router.post("/signup", status_code=202, response_model=FlowStarted, responses=error_responses(422, 429))
async def signup(request: Request, body: SignupStart, ctx: Ctx) -> Encoded:
    """Start a signup: a 6-digit code is emailed (15 minutes, 5 tries), or, to a registered address, a notice."""
    await ctx.limiter.hit("auth_email", accounts.email_key(body.email))
    return encoded(request, _started(await accounts.signup_start(ctx.services, body.email)), 202)


@router.post("/signup/verify", response_model=FlowVerified, responses=error_responses(404, 410, 422, 429))
async def signup_verify(body: CodeCheck, ctx: Ctx, request: Request) -> Encoded:
    """Check the emailed code. Wrong: 422 `invalid_code`; expired or used up: 410 `flow_expired`."""
    await ctx.limiter.hit("auth_code", client_ip(request))
    return encoded(request, await accounts.signup_verify(ctx.services, body.flow_id, body.code, ctx.limiter))


@router.post(
    "/signup/complete",
    status_code=201,
    response_model=UserWithTokens,
    responses=error_responses(404, 409, 410, 422, 429),
)
async def signup_complete(body: SignupComplete, ctx: Ctx, request: Request) -> Encoded:
    """Create the account on a verified flow; logs the new user in."""
    user, tokens = await accounts.signup_complete(
        ctx.services,
        flow_id_text=body.flow_id,
        username=body.username,
        name=body.name,
        password=body.password,
        birthday=body.birthday,
        bio=body.bio,
        user_agent=request.headers.get("user-agent", ""),
        ip=client_ip(request),
    )
    return encoded(request, {"user": presenters.me(user), "tokens": tokens.to_wire()}, 201)


@router.post("/login", response_model=UserWithTokens, responses=error_responses(401, 422, 429))
async def login(body: Login, ctx: Ctx, request: Request) -> Encoded:
    """Log in by email or username."""
    user, tokens = await accounts.login(
        ctx.services, body.login, body.password, request.headers.get("user-agent", ""), client_ip(request), ctx.limiter
    )
    return encoded(request, {"user": presenters.me(user), "tokens": tokens.to_wire()})


@router.post("/refresh", response_model=TokensOnly, responses=error_responses(401, 422, 429))
async def refresh(request: Request, body: RefreshBody, ctx: Ctx) -> Encoded:
    """Rotate the refresh token. A refresh token used twice revokes its whole session (401)."""
    tokens = await accounts.refresh(ctx.services, body.refresh_token, _socket_closer(ctx))
    return encoded(request, {"tokens": tokens.to_wire()})


@router.post("/logout", status_code=204, response_class=Response, responses=error_responses(401, 429))
async def logout(user: User, ctx: Ctx) -> Response:
    """End this session: its access and refresh tokens stop working at once, and its open sockets close."""
    await accounts.logout(ctx.services, user.session_id)
    await _socket_closer(ctx)(user.user_id, [user.session_id])
    return no_content()


@router.post("/password-reset", status_code=202, response_model=FlowStarted, responses=error_responses(422, 429))
async def password_reset(request: Request, body: ResetStart, ctx: Ctx) -> Encoded:
    """Start a reset. The answer is the same whether or not the email has an account."""
    await ctx.limiter.hit("auth_email", accounts.email_key(body.email))
    return encoded(request, _started(await accounts.reset_start(ctx.services, body.email)), 202)


@router.post("/password-reset/verify", response_model=FlowVerified, responses=error_responses(404, 410, 422, 429))
async def password_reset_verify(body: CodeCheck, ctx: Ctx, request: Request) -> Encoded:
    await ctx.limiter.hit("auth_code", client_ip(request))
    return encoded(request, await accounts.reset_verify(ctx.services, body.flow_id, body.code, ctx.limiter))


@router.post("/password-reset/complete", response_model=ResetDone, responses=error_responses(404, 409, 410, 422, 429))
async def password_reset_complete(request: Request, body: ResetComplete, ctx: Ctx) -> Encoded:
    """Set the new password; every session of the user is revoked."""
    user_id, revoked = await accounts.reset_complete(ctx.services, body.flow_id, body.new_password)
    await _socket_closer(ctx)(user_id, revoked)  # the password changed and the tokens are dead already
    return encoded(request, {"password_changed": True})
