"""What every wire struct shares: the two base classes and the field types."""

from __future__ import annotations

from typing import Annotated

import msgspec


class Wire(msgspec.Struct, frozen=True, kw_only=True):
    """An object the server sends: immutable, built by keyword."""


class Inbound(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A body a client sends: an unknown field is 422 (no mass assignment)."""


Id = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[0-9]{1,19}$",
        description="A time-ordered 64-bit id as a decimal string (never a number: JavaScript would round it)",
    ),
]
Timestamp = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]  # RFC 3339, UTC
Day = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date"})]  # YYYY-MM-DD
Username = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_.]{3,30}$")]
Count = Annotated[int, msgspec.Meta(ge=0)]
Seq = Annotated[int, msgspec.Meta(ge=0)]
Cursor = Annotated[
    str | None, msgspec.Meta(description="Hand it back as `?cursor=` for the next page; null on the last page")
]
Score = Annotated[float, msgspec.Meta(description="This reason's part of the item's score")]
