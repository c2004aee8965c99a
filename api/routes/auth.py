"""/auth: signup by emailed code, login, refresh, logout, password reset. Parse + authenticate only."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response

from api import accounts
from api.contract import body, operation
from api.deps import AppContext, Ctx, User, client_ip, limit
from api.responses import Encoded, encoded, no_content
from domain.errors import DomainError
from domain.ops import CloseSessions
from domain.wire.accounts import (
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


@router.post("/signup", **operation("signup", ok=FlowStarted, status=202, request=SignupStart, errors=(422, 429)))
async def signup(request: Request, ctx: Ctx, payload: SignupStart = body(SignupStart)) -> Encoded:
    """Start a signup: a 6-digit code is emailed (15 minutes, 5 tries), or, to a registered address, a notice."""
    await ctx.limiter.hit("auth_email", accounts.email_key(payload.email))
    return encoded(request, await accounts.signup_start(ctx.services, payload.email), 202)


@router.post(
    "/signup/verify",
    **operation("verifySignup", ok=FlowVerified, request=CodeCheck, errors=(404, 410, 422, 429)),
)
async def signup_verify(request: Request, ctx: Ctx, payload: CodeCheck = body(CodeCheck)) -> Encoded:
    """Check the emailed code. Wrong: 422 `invalid_code`; expired or used up: 410 `flow_expired`."""
    await ctx.limiter.hit("auth_code", client_ip(request))
    return encoded(request, await accounts.signup_verify(ctx.services, payload.flow_id, payload.code, ctx.limiter))


@router.post(
    "/signup/complete",
    **operation(
        "completeSignup",
        ok=UserWithTokens,
        status=201,
        request=SignupComplete,
        errors=(404, 409, 410, 422, 429),
    ),
)
async def signup_complete(request: Request, ctx: Ctx, payload: SignupComplete = body(SignupComplete)) -> Encoded:
    """Create the account on a verified flow; logs the new user in."""
    answer = await accounts.signup_complete(
        ctx.services,
        flow_id_text=payload.flow_id,
        username=payload.username,
        name=payload.name,
        password=payload.password,
        birthday=payload.birthday,
        bio=payload.bio,
        user_agent=request.headers.get("user-agent", ""),
        ip=client_ip(request),
    )
    return encoded(request, answer, 201)


@router.post("/login", **operation("login", ok=UserWithTokens, request=Login, errors=(401, 422, 429)))
async def login(request: Request, ctx: Ctx, payload: Login = body(Login)) -> Encoded:
    """Log in by email or username."""
    answer = await accounts.login(
        ctx.services,
        payload.login,
        payload.password,
        request.headers.get("user-agent", ""),
        client_ip(request),
        ctx.limiter,
    )
    return encoded(request, answer)


@router.post("/refresh", **operation("refreshTokens", ok=TokensOnly, request=RefreshBody, errors=(401, 422, 429)))
async def refresh(request: Request, ctx: Ctx, payload: RefreshBody = body(RefreshBody)) -> Encoded:
    """Rotate the refresh token. A refresh token used twice revokes its whole session (401)."""
    tokens = await accounts.refresh(ctx.services, payload.refresh_token, _socket_closer(ctx))
    return encoded(request, TokensOnly(tokens=tokens))


@router.post(
    "/logout",
    **operation("logout", status=204, description="Logged out", errors=(401, 429)),
    response_class=Response,
)
async def logout(user: User, ctx: Ctx) -> Response:
    """End this session: its access and refresh tokens stop working at once, and its open sockets close."""
    await accounts.logout(ctx.services, user.session_id)
    await _socket_closer(ctx)(user.user_id, [user.session_id])
    return no_content()


@router.post(
    "/password-reset",
    **operation("startPasswordReset", ok=FlowStarted, status=202, request=ResetStart, errors=(422, 429)),
)
async def password_reset(request: Request, ctx: Ctx, payload: ResetStart = body(ResetStart)) -> Encoded:
    """Start a reset. The answer is the same whether or not the email has an account."""
    await ctx.limiter.hit("auth_email", accounts.email_key(payload.email))
    return encoded(request, await accounts.reset_start(ctx.services, payload.email), 202)


@router.post(
    "/password-reset/verify",
    **operation("verifyPasswordReset", ok=FlowVerified, request=CodeCheck, errors=(404, 410, 422, 429)),
)
async def password_reset_verify(request: Request, ctx: Ctx, payload: CodeCheck = body(CodeCheck)) -> Encoded:
    """Check the emailed code. Wrong: 422 `invalid_code`; expired or used up: 410 `flow_expired`."""
    await ctx.limiter.hit("auth_code", client_ip(request))
    return encoded(request, await accounts.reset_verify(ctx.services, payload.flow_id, payload.code, ctx.limiter))


@router.post(
    "/password-reset/complete",
    **operation("completePasswordReset", ok=ResetDone, request=ResetComplete, errors=(404, 409, 410, 422, 429)),
)
async def password_reset_complete(request: Request, ctx: Ctx, payload: ResetComplete = body(ResetComplete)) -> Encoded:
    """Set the new password; every session of the user is revoked."""
    user_id, revoked = await accounts.reset_complete(ctx.services, payload.flow_id, payload.new_password)
    await _socket_closer(ctx)(user_id, revoked)  # the password changed and the tokens are dead already
    return encoded(request, ResetDone(password_changed=True))
