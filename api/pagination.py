"""Opaque keyset cursors: a position (time, id) as "<microseconds since 1970>-<id>".

Clients hand back the ``next_cursor`` they were given and never read it. The query parameter's pattern is the
whole rule: anything matching it is a position (one past the end of time or ids is clamped, so it names the
start of the list), anything else is refused with 422 by the parameter's validation.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Query, Request

from domain.errors import ValidationFailed

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
CURSOR_PATTERN = r"^[0-9]{1,18}-[0-9]{1,19}$"

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size (1-100)")]
Cursor = Annotated[
    str | None,
    Query(
        min_length=3,
        max_length=38,
        pattern=CURSOR_PATTERN,
        description="The `next_cursor` of the previous page (opaque)",
    ),
]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_AT = dt.datetime.max.replace(tzinfo=dt.UTC)
_MAX_MICROS = (_MAX_AT - _EPOCH) // dt.timedelta(microseconds=1)
_MAX_ID = 2**63 - 1


def encode_cursor(at: dt.datetime, item_id: int) -> str:
    return f"{(at - _EPOCH) // dt.timedelta(microseconds=1)}-{item_id}"


Row = TypeVar("Row")


def keyset(rows: Sequence[Row], limit: int, position: Callable[[Row], Any]) -> tuple[list[Row], Any | None]:
    """A page of a keyset query that asked for ``limit + 1`` rows: at most ``limit`` rows, and the position of
    the last of them when more follow (None on the last page). ``position`` names a row's place in the list:
    ``(time, id)`` for ``encode_cursor``, or whatever cursor a list keeps (search's scores)."""
    page = list(rows[:limit])
    return page, position(page[-1]) if len(rows) > limit and page else None


def page_of(rows: Sequence[Row], limit: int, at: str, key: str) -> tuple[list[Row], str | None]:
    """``keyset`` with the usual cursor: the row's time column ``at`` and id column ``key``, encoded."""
    page, last = keyset(rows, limit, lambda row: (row[at], int(row[key])))  # type: ignore[index]
    return page, None if last is None else encode_cursor(*last)


def decode_cursor(cursor: str | None) -> tuple[dt.datetime, int] | None:
    """The position a cursor (already matched against ``CURSOR_PATTERN``) names."""
    if cursor is None:
        return None
    micros_text, _, id_text = cursor.partition("-")
    micros, item_id = min(int(micros_text), _MAX_MICROS), min(int(id_text), _MAX_ID)
    return _EPOCH + dt.timedelta(microseconds=micros), item_id


# For hot reads that read ``limit`` and ``cursor`` themselves (``read_page``), skipping parameter validation by
# dependency resolution: the same parameters, as the OpenAPI document lists them (``openapi_extra``).
def page_parameters(cursor_pattern: str = CURSOR_PATTERN, *, min_length: int | None = 3) -> list[dict[str, Any]]:
    cursor: dict[str, Any] = {
        "maxLength": 38,
        **({"minLength": min_length} if min_length else {}),
        "pattern": cursor_pattern,
        "type": "string",
    }
    return [
        {
            "description": "Page size (1-100)",
            "in": "query",
            "name": "limit",
            "required": False,
            "schema": {"default": DEFAULT_LIMIT, "description": "Page size (1-100)", "maximum": MAX_LIMIT,
                       "minimum": 1, "title": "Limit", "type": "integer"},
        },
        {
            "description": "The `next_cursor` of the previous page (opaque)",
            "in": "query",
            "name": "cursor",
            "required": False,
            "schema": {
                "anyOf": [cursor, {"type": "null"}],
                "description": "The `next_cursor` of the previous page (opaque)",
                "title": "Cursor",
            },
        },
    ]  # fmt: skip


PAGE_PARAMETERS = page_parameters()
_CURSOR_RE = re.compile(CURSOR_PATTERN)


def read_page(
    request: Request, cursor_re: re.Pattern[str] = _CURSOR_RE, *, min_length: int = 3
) -> tuple[int, str | None]:
    """``limit`` and ``cursor`` from the query string, checked exactly as ``Limit`` and a cursor parameter of
    ``cursor_re`` are (422 ``validation_failed`` naming the parameter)."""
    query = request.query_params
    raw = query.get("limit")
    limit = DEFAULT_LIMIT
    if raw is not None:
        try:
            limit = int(raw)
        except ValueError:
            raise ValidationFailed({"limit": "Input should be a valid integer"}) from None
        if not 1 <= limit <= MAX_LIMIT:
            raise ValidationFailed({"limit": f"Input should be between 1 and {MAX_LIMIT}"})
    cursor = query.get("cursor")
    if cursor is not None and not (min_length <= len(cursor) <= 38 and cursor_re.search(cursor)):
        raise ValidationFailed({"cursor": f"String should match pattern '{cursor_re.pattern}'"})
    return limit, cursor
