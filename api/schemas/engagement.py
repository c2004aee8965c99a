"""Shapes of reactions, comments, reposts and saves."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Strict
from api.schemas.fields import text_pattern
from api.schemas.media import Media
from api.schemas.posts import PostCounts
from api.schemas.users import UserSummary


class Reaction(Strict):
    emoji: str = Field(
        min_length=1, max_length=32, description="Exactly one emoji (skin tones, flags and ZWJ sequences count as one)"
    )


class MyReaction(BaseModel):
    reaction: str | None


class PostCountsOut(BaseModel):
    post_id: str
    counts: PostCounts
    reactions_summary: dict[str, int]
    my: dict[str, bool | str | None] = Field(description="My reaction, repost and save")


class Reactor(BaseModel):
    user: UserSummary
    emoji: str
    created_at: str


class ReactorPage(BaseModel):
    items: list[Reactor]
    next_cursor: str | None


class CommentCounts(BaseModel):
    reactions: int
    replies: int


class CommentOut(BaseModel):
    id: str
    post_id: str
    parent_id: str | None
    author: UserSummary
    text: str
    media: Media | None
    mentions: list[str]
    counts: CommentCounts
    my: MyReaction
    created_at: str


class CommentPage(BaseModel):
    items: list[CommentOut]
    next_cursor: str | None


class CommentCountsOut(BaseModel):
    comment_id: str
    post_id: str
    counts: CommentCounts
    my: MyReaction


class NewComment(Strict):
    """Text (<= 2,000 characters, may mention `@users`) and/or `media_id` (your own completed upload made with
    `purpose: comment`, an image or video); at least one."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["text"], "properties": {"text": {"type": "string"}}},
                {"required": ["media_id"], "properties": {"media_id": {"type": "string"}}},
            ]
        }
    )

    text: str | None = Field(default=None, max_length=2000, pattern=text_pattern(2000))
    media_id: str | None = Field(default=None, pattern=r"^[0-9]{1,19}$")


class Reposted(BaseModel):
    reposted: bool


class Saved(BaseModel):
    saved: bool
