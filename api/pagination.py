"""Opaque keyset cursors: a position (time, id) as "<microseconds since 1970>-<id>".

Clients hand back the ``next_cursor`` they were given and never read it. The query parameter's pattern is the
whole rule: anything matching it is a position (one past the end of time or ids is clamped, so it names the
start of the list), anything else is refused with 422 by the parameter's validation.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Query

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


def decode_cursor(cursor: str | None) -> tuple[dt.datetime, int] | None:
    """The position a cursor (already matched against ``CURSOR_PATTERN``) names."""
    if cursor is None:
        return None
    micros_text, _, id_text = cursor.partition("-")
    micros, item_id = min(int(micros_text), _MAX_MICROS), min(int(id_text), _MAX_ID)
    return _EPOCH + dt.timedelta(microseconds=micros), item_id
