"""The home feed: FeedItem and its page."""

from __future__ import annotations

from typing import Annotated

import msgspec

from domain.wire.base import Cursor, Id, Timestamp, Wire
from domain.wire.posts import Post
from domain.wire.recs import PostReason
from domain.wire.users import UserSummary


class FeedItem(Wire, frozen=True, kw_only=True):
    """A post in my home feed: posted, or reposted by someone I follow (`reposted_by`), or recommended past the end
    of my timeline (`reasons`)."""

    id: Annotated[Id, msgspec.Meta(description="The feed entry's id: the post's id, or the repost's (the cursor key)")]
    post: Post
    reposted_by: Annotated[
        UserSummary | None, msgspec.Meta(description="Who reposted it into this feed; null for a post")
    ]
    created_at: Annotated[Timestamp, msgspec.Meta(description="When it was posted or reposted")]
    reasons: (
        Annotated[
            list[PostReason],
            msgspec.Meta(description="Only on recommended items (past the end of your timeline): why it is here"),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class FeedPage(Wire, frozen=True, kw_only=True):
    """A page of my home feed, newest first; `next_cursor` is null on the last page."""

    items: list[FeedItem]
    next_cursor: Cursor
