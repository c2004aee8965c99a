"""Notification shapes: Notification and its page, the unread count, the mark-read body and the ``types`` filter.

The ``types`` filter's pattern is documentation of the rule ``parse_types`` applies (``json_schema_extra``), so
a refused value gets a reason naming the unknown type rather than a regex.
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

from fastapi import Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from api.schemas.common import Strict
from api.schemas.engagement import CommentOut
from api.schemas.posts import Post
from api.schemas.users import UserSummary
from domain.errors import ValidationFailed
from domain.events import NotificationType

NOTIFICATION_TYPES: tuple[str, ...] = get_args(NotificationType)
MAX_MARK_IDS = 100
_ONE_TYPE = "(" + "|".join(NOTIFICATION_TYPES) + ")"
TYPES_PATTERN = f"^{_ONE_TYPE}(,{_ONE_TYPE})*$"
IdStr = Annotated[str, Field(pattern=r"^[0-9]{1,19}$")]
MAX_ID = (1 << 63) - 1


class Notification(BaseModel):
    """Something that happened to me, by `actor`, newest first in the inbox. `post` is present on the types
    about a post, `comment` on those about a comment (reaction_comment, comment_post, reply_comment,
    mention_comment), `emoji` on reactions."""

    id: str
    type: NotificationType
    actor: UserSummary
    post: Post | None = None
    comment: CommentOut | None = None
    emoji: str | None = None
    created_at: str
    read: bool


class NotificationPage(BaseModel):
    """A page of my notifications, newest first; `next_cursor` is null on the last page."""

    items: list[Notification]
    next_cursor: str | None


class UnreadCount(BaseModel):
    count: int = Field(ge=0, description="My unread notifications, exactly")


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


def _exactly_one(schema: dict[str, Any]) -> None:
    """Exactly one of the two fields, never null: what ``MarkRead.selection`` enforces, said in the schema."""
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)
        if "anyOf" in prop:
            (only,) = [s for s in prop.pop("anyOf") if s.get("type") != "null"]
            prop.update(only)
    schema["oneOf"] = [{"required": ["up_to_id"]}, {"required": ["ids"]}]


class MarkRead(Strict):
    """Exactly one of: `up_to_id`, to mark every notification of mine with an id up to and including it read; or
    `ids` (1-100), to mark those of them that are mine read (others' ids are ignored). Marking read again
    changes nothing."""

    model_config = ConfigDict(json_schema_extra=_exactly_one)

    up_to_id: IdStr | None = None
    ids: Annotated[list[IdStr], Field(min_length=1, max_length=MAX_MARK_IDS)] | None = None

    def selection(self) -> tuple[int | None, list[int] | None]:
        """``(up_to_id, None)`` or ``(None, ids)`` as ints; 422 naming the fields unless exactly one is given.
        Ids past the 64-bit range name no notification: ``up_to_id`` is clamped, such ``ids`` are dropped."""
        nulls: dict[str, str] = {
            n: "must not be null"
            for n in ("up_to_id", "ids")
            if n in self.model_fields_set and getattr(self, n) is None
        }
        if nulls:
            raise ValidationFailed(nulls)
        if (self.up_to_id is None) == (self.ids is None):
            reason = "give exactly one of up_to_id and ids"
            raise ValidationFailed({"up_to_id": reason, "ids": reason}, "Give exactly one of `up_to_id` and `ids`.")
        if self.up_to_id is not None:
            return min(int(self.up_to_id), MAX_ID), None
        assert self.ids is not None
        return None, sorted({int(i) for i in self.ids if int(i) <= MAX_ID})
