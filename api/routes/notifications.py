"""/me/notifications: my inbox, its unread count, and marking read.

Only the owner reads or marks a notification (api/reads/notifications.py: every query is scoped by the caller's
id). The ``types`` filter's pattern documents the rule ``parse_types`` applies, so a refused value gets a reason
naming the unknown type rather than a regex.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, get_args

import msgspec
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from api.codec import JSON
from api.contract import body, operation, ref
from api.deps import Ctx, User, WriteLimit
from api.pagination import DEFAULT_LIMIT, Cursor, Limit
from api.reads import notifications as reads
from api.responses import Encoded, encoded, no_content
from domain.errors import ValidationFailed
from domain.wire.notifications import (
    MARK_READ_ONE_OF,
    MarkRead,
    NotificationPage,
    NotificationType,
    UnreadCount,
)

router = APIRouter(tags=["notifications"])

NOTIFICATION_TYPES: tuple[str, ...] = get_args(NotificationType)
MAX_ID = (1 << 63) - 1
_ONE_TYPE = "(" + "|".join(NOTIFICATION_TYPES) + ")"
TYPES_PATTERN = f"^{_ONE_TYPE}(,{_ONE_TYPE})*$"
_ID = re.compile(r"^[0-9]{1,19}$")
# The mark-read body: exactly one of up_to_id and ids (said here: a struct's schema cannot).
MARK_READ_BODY = {
    "requestBody": {
        "required": True,
        "content": {JSON: {"schema": {"allOf": [ref(MarkRead)], "oneOf": MARK_READ_ONE_OF}}},
    }
}


def _check_types(value: str | None) -> str | None:
    if value is None:
        return None
    unknown = [t for t in value.split(",") if t not in NOTIFICATION_TYPES]
    if unknown:
        raise PydanticCustomError(
            "unknown_notification_type",
            "unknown type {unknown}: a comma-separated list of {known}",
            {"unknown": repr(unknown[0]), "known": ", ".join(NOTIFICATION_TYPES)},
        )
    return value


Types = Annotated[
    str | None,
    Query(
        max_length=200,
        description="Only these types: a comma-separated list of " + ", ".join(f"`{t}`" for t in NOTIFICATION_TYPES),
        json_schema_extra={"pattern": TYPES_PATTERN},
    ),
    AfterValidator(_check_types),
]


def parse_types(value: str | None) -> list[str] | None:
    """The types a checked ``types`` parameter names (each once), or None for all."""
    return None if value is None else sorted(set(value.split(",")))


def selection(payload: MarkRead) -> tuple[int | None, list[int] | None]:
    """``(up_to_id, None)`` or ``(None, ids)`` as ints; 422 naming the fields unless exactly one is given, and
    each id that is not one by its place (``ids.1``). Ids past the 64-bit range name no notification:
    ``up_to_id`` is clamped, such ``ids`` are dropped."""
    given = [name for name in ("up_to_id", "ids") if getattr(payload, name) is not msgspec.UNSET]
    if len(given) != 1:
        reason = "give exactly one of up_to_id and ids"
        raise ValidationFailed({"up_to_id": reason, "ids": reason}, "Give exactly one of `up_to_id` and `ids`.")
    if isinstance(payload.up_to_id, str):
        return min(int(payload.up_to_id), MAX_ID), None
    ids: list[Any] = payload.ids  # type: ignore[assignment]  # given
    bad = {
        f"ids.{i}": "must be a notification id" for i, v in enumerate(ids) if not isinstance(v, str) or not _ID.match(v)
    }
    if bad:
        raise ValidationFailed(bad)
    return None, sorted({int(i) for i in ids if int(i) <= MAX_ID})


@router.get("/me/notifications", **operation("listMyNotifications", ok=NotificationPage, errors=(401, 422)))
async def list_notifications(
    request: Request,
    user: User,
    ctx: Ctx,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    types: Types = None,
) -> Encoded:
    """My notifications, newest first, read or not (`read`), each with its actor and my follow flags on it, and
    the post it is about (if any); only those of `types` when given (an unknown type is 422). Pages are stable
    while new ones arrive."""
    services = ctx.services
    page = await reads.inbox(
        services.pool, services.settings, ctx.posts, user.user_id, limit, cursor, parse_types(types)
    )
    return encoded(request, page)


@router.get("/me/notifications/unread-count", **operation("countMyUnreadNotifications", ok=UnreadCount, errors=(401,)))
async def unread_count(request: Request, user: User, ctx: Ctx) -> Encoded:
    """How many of my notifications are unread, exactly."""
    return encoded(request, UnreadCount(count=await reads.unread(ctx.services.pool, user.user_id)))


@router.post(
    "/me/notifications/read",
    **operation(
        "markMyNotificationsRead", status=204, description="Marked", errors=(401, 422, 429), extra=MARK_READ_BODY
    ),
    dependencies=[WriteLimit],
)
async def mark_read(user: User, ctx: Ctx, payload: MarkRead = body(MarkRead)) -> Response:
    """Mark my notifications read: all up to and including `up_to_id`, or those of `ids` that are mine (others'
    ids are ignored, so they reveal nothing). Idempotent: already read ones stay read."""
    up_to_id, ids = selection(payload)
    await reads.mark_read(ctx.services.pool, user.user_id, up_to_id, ids)
    return no_content()
