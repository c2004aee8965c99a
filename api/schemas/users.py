"""User-facing shapes: UserSummary, Profile, Me, and the PATCH /me body."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from api.schemas.common import Strict


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


class PatchMe(Strict):
    name: str | None = Field(default=None, max_length=200)
    bio: str | None = Field(default=None, max_length=2000)
    birthday: dt.date | None = None
    username: str | None = Field(default=None, max_length=100)
