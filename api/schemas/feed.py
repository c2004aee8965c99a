"""The home feed's shapes: FeedItem and its page."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.schemas.posts import Post
from api.schemas.recs import PostReason
from api.schemas.users import UserSummary


class FeedItem(BaseModel):
    id: str = Field(description="The feed entry's id: the post's id, or the repost's (the cursor key)")
    post: Post
    reposted_by: UserSummary | None = Field(description="Who reposted it into this feed; null for a post")
    created_at: str = Field(description="When it was posted or reposted")
    reasons: list[PostReason] | None = Field(
        default=None, description="Only on recommended items (past the end of your timeline): why it is here"
    )


class FeedPage(BaseModel):
    items: list[FeedItem]
    next_cursor: str | None
