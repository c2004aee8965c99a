"""Post shapes: Post and its page, the POST /posts body, hashtag pages."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from api.schemas.common import Strict
from api.schemas.fields import text_pattern
from api.schemas.media import Media
from api.schemas.users import UserSummary

MediaIdStr = Annotated[str, Field(pattern=r"^[0-9]{1,19}$")]


class PostCounts(BaseModel):
    reactions: int
    comments: int
    reposts: int
    saves: int


class PostMy(BaseModel):
    reaction: str | None
    reposted: bool
    saved: bool


class Post(BaseModel):
    id: str
    author: UserSummary
    type: Literal["photo", "video", "reel"]
    caption: str
    media: list[Media]
    mentions: list[str] = Field(description="Usernames mentioned in the caption that exist")
    hashtags: list[str] = Field(description="Hashtags of the caption, lower-case")
    counts: PostCounts
    reactions_summary: dict[str, int]
    my: PostMy = Field(description="The reader's own reaction, repost and save (all empty when anonymous)")
    created_at: str


class PostPage(BaseModel):
    items: list[Post]
    next_cursor: str | None


class CreatePost(Strict):
    """A photo post takes 1-10 images, a video or reel exactly one video: your own completed uploads made with
    `purpose: post`. The caption (<= 2,200 characters) may mention `@users` and carry `#hashtags`."""

    type: Literal["photo", "video", "reel"]
    caption: str | None = Field(default=None, max_length=2200, pattern=text_pattern(2200, allow_empty=True))
    media_ids: list[MediaIdStr] = Field(min_length=1, max_length=10, json_schema_extra={"uniqueItems": True})


class Hashtag(BaseModel):
    tag: str
    posts_count: int
