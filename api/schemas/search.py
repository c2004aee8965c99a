"""GET /search shapes: a page of posts, users or hashtags, each with its score."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.schemas.posts import Post
from api.schemas.users import UserSummary


class PostHit(Post):
    score: float = Field(description="Relevance x engagement x recency (see the description)")


class UserHit(UserSummary):
    score: float


class HashtagHit(BaseModel):
    tag: str
    posts_count: int
    score: float


class SearchPage(BaseModel):
    items: list[PostHit] | list[UserHit] | list[HashtagHit] = Field(
        description="Posts, users or hashtags, as `type` asks; best first"
    )
    next_cursor: str | None
    corrected_query: str | None = Field(
        description="The query the page is for when words were corrected (showing results for ...); else null"
    )
