"""Account flows: signup by email code, login, refresh rotation, password reset.

These run in the api process (they belong to no existing user's logical actor yet); the writes that do
belong to one user (logout, profile edits) go through that user's UserShard entity (actors/user.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import asyncpg

from actors.runtime.services import Services
from domain import rules
from domain import throttle as th
from domain.errors import Conflict, Gone, InvalidCredentials, NotFound, Unauthenticated, ValidationFailed
from domain.present import me, rfc3339
from domain.tokens import new_code, new_refresh_token
from domain.wire.accounts import BEARER, FlowStarted, FlowVerified, Tokens, UserWithTokens, day
from storage import auth as auth_store
from storage import db, ids
from storage import users as user_store
from storage.errors import RowNotFound, UniqueViolation
from storage.outage import OUTAGES

log = logging.getLogger("i9lyfe.accounts")

CODE_TTL = dt.timedelta(minutes=15)
SIGNUP_NOTICE_SUBJECT = "Someone tried to sign up with your email"
SIGNUP_NOTICE_BODY = (
    "Someone, maybe you, asked to create an i9lyfe account with this email address, which already has one.\n"
    "If it was you, log in instead, or reset your password if you forgot it.\n"
    "If it was not you, ignore this mail: nothing changes and no code was sent."
)
MAX_CODE_ATTEMPTS = 5
SIGNUP = "signup"
RESET = "password_reset"

_background: set[asyncio.Task[None]] = set()

# Best effort after a revocation: close the open sockets of (user id, revoked sessions) with 4401.
CloseSockets = Callable[[int, list[int]], Awaitable[None]]


def _spawn(coro: Coroutine[Any, Any, None]) -> None:
    task = asyncio.create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _send_quietly(services: Services, to: str, subject: str, body: str) -> None:
    try:
        await services.mailer.send(to, subject, body)
    except Exception as exc:  # the SMTP server down: one warning per outage; anything else with its stack
        OUTAGES.note(f"mail delivery failed ({subject})", exc, log)


def _mail_code(services: Services, email: str, subject: str, first_line: str) -> None:
    """Send a code mail in the background: the response does not wait for (or reveal) the mail server."""
    body = f"{first_line}\nIt expires in 15 minutes. If you did not ask for it, ignore this mail."
    _spawn(_send_quietly(services, email, subject, body))


def _email_field(raw: str) -> str:
    try:
        return rules.normalize_email(raw)
    except rules.RuleError as exc:
        raise ValidationFailed({"email": str(exc)}) from exc


def email_key(raw: str) -> str:
    """The subject the per-address mail limit counts (domain/throttle.py); 422 when it is no email address."""
    return th.address_key(_email_field(raw))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _tokens(access_token: str, refresh_token: str, expires_in: int) -> Tokens:
    return Tokens(access_token=access_token, refresh_token=refresh_token, token_type=BEARER, expires_in=expires_in)


def _signed_in(services: Services, user: asyncpg.Record, tokens: Tokens) -> UserWithTokens:
    return UserWithTokens(user=me(user, services.settings.public_base_url), tokens=tokens)


def parse_flow_id(value: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 19 or int(value) >= 2**63:
        raise NotFound("No such flow.", code="not_found")
    return int(value)


def _field_errors(checks: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Run ``{field: zero-arg callable}``; collect cleaned values and per-field reasons."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, check in checks.items():
        try:
            values[name] = check()
        except rules.RuleError as exc:
            errors[name] = str(exc)
    return values, errors


def _code_digest(services: Services, flow_id: int, code: str) -> bytes:
    return services.tokens.code_digest(flow_id, code)


def _refresh_digest(services: Services, token: str) -> bytes:
    return services.tokens.refresh_digest(token)


# ---------------------------------------------------------------- email-code flows


async def _start_flow(
    services: Services, kind: str, email: str, user_id: int | None, *, completable: bool = True
) -> tuple[int, str, dt.datetime]:
    """A new flow and its code. A flow that must never complete (a signup for a registered address, a reset
    for an unknown one) stores random bytes instead of a code's digest: every code is wrong for it, exactly as
    a wrong code is for any flow, so its answers reveal nothing."""
    flow_id = ids.new_id()
    code = new_code()
    code_hash = _code_digest(services, flow_id, code) if completable else secrets.token_bytes(32)
    expires_at = _now() + CODE_TTL
    await auth_store.insert_flow(
        services.pool,
        flow_id=flow_id,
        kind=kind,
        email=email,
        user_id=user_id,
        code_hash=code_hash,
        expires_at=expires_at,
    )
    return flow_id, code, expires_at


def _check_flow_usable(row: asyncpg.Record) -> None:
    if row["consumed_at"] is not None or row["burned_at"] is not None or row["expires_at"] <= _now():
        raise Gone("This code has expired or was used up; start again.", code="flow_expired")


async def _verify_code(
    services: Services, kind: str, flow_id_text: str, code: str, throttle: th.Throttle | None
) -> asyncpg.Record:
    """Check a code. Wrong codes count per flow (5 burn it) and per address across flows (``code_email``):
    past that limit every guess, right or wrong, is 429 and nothing is written."""
    flow_id = parse_flow_id(flow_id_text)
    wrong: int | None = None
    async with db.transaction(services.pool) as conn:
        try:
            row = await auth_store.get_flow_for_update(conn, flow_id, kind)
        except RowNotFound as exc:
            raise NotFound("No such flow.") from exc
        _check_flow_usable(row)
        address = th.address_key(row["email"])
        if throttle is not None:
            await throttle.check(th.CODE_PER_EMAIL, address)
        good = (
            code.isdigit()
            and len(code) == 6
            and hmac.compare_digest(bytes(row["code_hash"]), _code_digest(services, flow_id, code))
        )
        if good:
            await auth_store.mark_flow_verified(conn, flow_id)
        else:
            attempts = int(row["attempts"]) + 1
            await auth_store.record_failed_attempt(conn, flow_id, burn=attempts >= MAX_CODE_ATTEMPTS)
            wrong = MAX_CODE_ATTEMPTS - attempts
    if wrong is not None:  # raised after commit, so the attempt is counted
        if throttle is not None:
            await throttle.record(th.CODE_PER_EMAIL, address)
        raise ValidationFailed(
            {"code": "is incorrect"},
            "The code is incorrect." if wrong > 0 else "The code is incorrect and this flow is now used up.",
            code="invalid_code",
            details={"attempts_left": max(0, wrong)},
        )
    return row


async def _load_verified_flow(conn: asyncpg.Connection, kind: str, flow_id: int) -> asyncpg.Record:
    try:
        row = await auth_store.get_flow_for_update(conn, flow_id, kind)
    except RowNotFound as exc:
        raise NotFound("No such flow.") from exc
    _check_flow_usable(row)
    if row["verified_at"] is None:
        raise Conflict("Verify the emailed code first.", code="flow_not_verified")
    return row


async def _peek_verified_flow(services: Services, kind: str, flow_id: int) -> asyncpg.Record:
    async with db.transaction(services.pool) as conn:
        return await _load_verified_flow(conn, kind, flow_id)


# ---------------------------------------------------------------- signup


async def signup_start(services: Services, email_raw: str) -> FlowStarted:
    """Same answer whether or not the address has an account (no enumeration): a registered address gets a
    flow that can never complete and a notice instead of a code."""
    email = _email_field(email_raw)
    registered = await user_store.email_exists(services.pool, email)
    flow_id, code, expires_at = await _start_flow(services, SIGNUP, email, None, completable=not registered)
    if registered:
        _spawn(_send_quietly(services, email, SIGNUP_NOTICE_SUBJECT, SIGNUP_NOTICE_BODY))
    else:
        _mail_code(services, email, f"Your i9lyfe code: {code}", f"Your i9lyfe signup code is {code}.")
    return FlowStarted(flow_id=str(flow_id), expires_at=rfc3339(expires_at))


async def signup_verify(
    services: Services, flow_id: str, code: str, throttle: th.Throttle | None = None
) -> FlowVerified:
    row = await _verify_code(services, SIGNUP, flow_id, code, throttle)
    return FlowVerified(flow_id=str(row["id"]), email=row["email"])


async def signup_complete(
    services: Services,
    *,
    flow_id_text: str,
    username: str,
    name: str,
    password: str,
    birthday: str,
    bio: str | None,
    user_agent: str,
    ip: str,
) -> UserWithTokens:
    """``birthday`` as on the wire (YYYY-MM-DD); every bad field is named at once."""
    flow_id = parse_flow_id(flow_id_text)
    flow = await _peek_verified_flow(services, SIGNUP, flow_id)
    values, errors = _field_errors(
        {
            "username": lambda: rules.normalize_username(username),
            "name": lambda: rules.check_name(name),
            "birthday": lambda: rules.check_birthday(day(birthday)),
            "bio": lambda: rules.check_bio(bio or ""),
        }
    )
    try:
        rules.check_password(password, username=values.get("username", ""), email=flow["email"])
    except rules.RuleError as exc:
        errors["password"] = str(exc)
    if errors:
        raise ValidationFailed(errors)
    password_hash = await services.passwords.hash(password)
    try:
        async with db.transaction(services.pool) as conn:
            flow = await _load_verified_flow(conn, SIGNUP, flow_id)
            user = await user_store.insert_user(
                conn,
                user_id=ids.new_id(),
                username=values["username"],
                email=flow["email"],
                name=values["name"],
                bio=values["bio"],
                birthday=values["birthday"],
                password_hash=password_hash,
            )
            await auth_store.mark_flow_consumed(conn, flow_id)
            tokens = await _create_session(services, conn, int(user["id"]), user_agent, ip)
    except UniqueViolation as exc:
        conflict = signup_conflict(exc)
        if conflict is None:
            raise  # not the client's doing (say a primary-key clash): an internal error, logged with its stack
        raise conflict from exc
    return _signed_in(services, user, tokens)


def signup_conflict(exc: UniqueViolation) -> Conflict | None:
    """The 409 that a unique violation during signup means, or None when no input of the client caused it."""
    if exc.constraint == user_store.EMAIL_UNIQUE:
        return Conflict("An account with this email already exists.", code="email_taken")
    if exc.constraint == user_store.USERNAME_UNIQUE:
        return Conflict("This username is taken.", code="username_taken")
    return None


# ---------------------------------------------------------------- sessions


async def _create_session(
    services: Services, conn: asyncpg.Connection, user_id: int, user_agent: str, ip: str
) -> Tokens:
    session_id = ids.new_id()
    refresh = new_refresh_token()
    await auth_store.insert_session(
        conn,
        session_id=session_id,
        user_id=user_id,
        expires_at=_now() + dt.timedelta(seconds=services.settings.refresh_ttl_s),
        refresh_hash=_refresh_digest(services, refresh),
        user_agent=user_agent,
        ip=ip,
    )
    return _tokens(services.tokens.issue_access(user_id, session_id), refresh, services.tokens.access_ttl_s)


async def login(
    services: Services,
    login_raw: str,
    password: str,
    user_agent: str,
    ip: str,
    throttle: th.Throttle | None = None,
) -> UserWithTokens:
    """Failed logins count per account (``login_account``), whichever IP they come from; past the limit even
    the right password is 429. A login naming no account counts the same way, under its own text."""
    row = await user_store.find_login(services.pool, login_raw) if 0 < len(login_raw) <= 254 else None
    account = f"user:{row['id']}" if row is not None else th.login_key(login_raw)
    if throttle is not None:
        await throttle.check(th.LOGIN_PER_ACCOUNT, account)
    stored = row["password_hash"] if row is not None else None
    if not await services.passwords.verify(stored, password) or row is None or stored is None:
        if throttle is not None:
            await throttle.record(th.LOGIN_PER_ACCOUNT, account)
        raise InvalidCredentials()
    if services.passwords.needs_rehash(stored):
        new_hash = await services.passwords.hash(password)
        await user_store.update_password_hash_if_unchanged(services.pool, int(row["id"]), stored, new_hash)
    async with db.transaction(services.pool) as conn:
        tokens = await _create_session(services, conn, int(row["id"]), user_agent, ip)
    return _signed_in(services, row, tokens)


async def refresh(services: Services, refresh_token: str, close_sockets: CloseSockets | None = None) -> Tokens:
    """Rotate. A reused token (the theft signal) revokes its session: its tokens stop working at once and
    ``close_sockets`` is asked to close the session's open sockets before the 401."""
    digest = _refresh_digest(services, refresh_token)
    reused_session: int | None = None
    async with db.transaction(services.pool) as conn:
        try:
            row = await auth_store.get_refresh_for_update(conn, digest)
        except RowNotFound as exc:
            raise Unauthenticated("The refresh token is invalid.", reason="invalid_refresh_token") from exc
        session_id = int(row["session_id"])
        if row["revoked_at"] is not None or row["expires_at"] <= _now():
            raise Unauthenticated("This session has ended; log in again.", reason="session_revoked")
        if row["used_at"] is not None:
            await auth_store.revoke_session(conn, session_id, "refresh_reuse")
            reused_session = session_id
        else:
            new_refresh = new_refresh_token()
            await auth_store.rotate_refresh(conn, session_id, digest, _refresh_digest(services, new_refresh))
    if reused_session is not None:
        await services.deny_sessions([reused_session])
        log.warning("refresh token reuse; session revoked", extra={"fields": {"session_id": reused_session}})
        if close_sockets is not None:
            await close_sockets(int(row["user_id"]), [reused_session])
        raise Unauthenticated("This refresh token was already used; the session is revoked.", reason="refresh_reused")
    access = services.tokens.issue_access(int(row["user_id"]), session_id)
    return _tokens(access, new_refresh, services.tokens.access_ttl_s)


async def logout(services: Services, session_id: int) -> bool:
    """Revoke the session in storage, then deny its access tokens in every process. Needs no shard: closing
    the session's open sockets is the caller's best effort afterwards. False if it had ended already."""
    async with db.transaction(services.pool) as conn:
        changed = await auth_store.revoke_session(conn, session_id, "logout")
    await services.deny_sessions([session_id])
    return changed


# ---------------------------------------------------------------- password reset


async def reset_start(services: Services, email_raw: str) -> FlowStarted:
    """Same answer whether or not the email has an account (no enumeration)."""
    email = _email_field(email_raw)
    user_id = await user_store.find_user_id_by_email(services.pool, email)
    flow_id, code, expires_at = await _start_flow(services, RESET, email, user_id, completable=user_id is not None)
    if user_id is not None:
        _mail_code(
            services,
            email,
            f"Your i9lyfe password reset code: {code}",
            f"Your i9lyfe password reset code is {code}. If you did not ask for it, your password stays the same.",
        )
    return FlowStarted(flow_id=str(flow_id), expires_at=rfc3339(expires_at))


async def reset_verify(
    services: Services, flow_id: str, code: str, throttle: th.Throttle | None = None
) -> FlowVerified:
    row = await _verify_code(services, RESET, flow_id, code, throttle)
    return FlowVerified(flow_id=str(row["id"]), email=row["email"])


async def reset_complete(services: Services, flow_id_text: str, new_password: str) -> tuple[int, list[int]]:
    """Set the new password and revoke every session of the user. Returns the user id and the revoked sessions."""
    flow_id = parse_flow_id(flow_id_text)
    flow = await _peek_verified_flow(services, RESET, flow_id)
    username = ""
    if flow["user_id"] is not None:
        with contextlib.suppress(RowNotFound):  # erased meanwhile: the update below says so
            username = (await user_store.get_user(services.pool, int(flow["user_id"])))["username"]
    try:
        rules.check_password(new_password, username=username, email=flow["email"])
    except rules.RuleError as exc:
        raise ValidationFailed({"new_password": str(exc)}) from exc
    password_hash = await services.passwords.hash(new_password)
    async with db.transaction(services.pool) as conn:
        flow = await _load_verified_flow(conn, RESET, flow_id)
        if flow["user_id"] is None:  # unreachable: such a flow's code is never sent
            raise NotFound("No such flow.")
        user_id = int(flow["user_id"])
        try:
            await user_store.update_password(conn, user_id, password_hash)
        except RowNotFound as exc:
            raise Gone("This account no longer exists.", code="flow_expired") from exc
        await auth_store.mark_flow_consumed(conn, flow_id)
        revoked = await auth_store.revoke_user_sessions(conn, user_id, "password_reset")
    await services.deny_sessions(revoked)
    return user_id, revoked
