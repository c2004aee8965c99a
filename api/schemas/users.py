"""User-facing shapes: UserSummary, Profile, Me, and the PATCH /me body."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from api.schemas.common import Strict
from api.schemas.fields import Bio, Birthday, Name, Username


class UserSummary(BaseModel):
    id: str
    username: str
    name: str
    avatar: str | None
    followed_by_me: bool | None = None
    follows_me: bool | None = None


class Profile(UserSummary):
    bio: str
    followers_count: int
    following_count: int
    posts_count: int
    created_at: str


class Me(Profile):
    email: str
    birthday: str


NULLABLE = frozenset({"bio"})


def _no_defaults(schema: dict[str, Any]) -> None:
    """A field left out is left alone: there is no default to document; only ``bio`` may be null (the others
    are refused with 422 "must not be null" by the profile rules)."""
    for name, prop in schema.get("properties", {}).items():
        prop.pop("default", None)
        if name not in NULLABLE and "anyOf" in prop:
            (only,) = [s for s in prop.pop("anyOf") if s.get("type") != "null"]
            prop.update(only)


class PatchMe(Strict):
    """Only the fields sent change. `name`, `username` and `birthday` may not be null; a null `bio` clears it."""

    model_config = ConfigDict(json_schema_extra=_no_defaults)

    name: Name | None = None
    bio: Bio | None = None
    birthday: Birthday | None = None
    username: Username | None = None


class UserPage(BaseModel):
    """A page of users, newest first; `next_cursor` is null on the last page."""

    items: list[UserSummary]
    next_cursor: str | None


class FollowState(BaseModel):
    following: bool
