"""Posts, comments and what engagement answers."""

from __future__ import annotations

from typing import Literal

from domain.wire.base import Count, Cursor, Id, Timestamp, Wire
from domain.wire.media import Media
from domain.wire.users import UserSummary

PostType = Literal["photo", "video", "reel"]


class PostCounts(Wire, frozen=True, kw_only=True):
    reactions: Count
    comments: Count
    reposts: Count
    saves: Count


class PostMy(Wire, frozen=True, kw_only=True):
    """The reader's own reaction, repost and save (all empty when anonymous)."""

    reaction: str | None
    reposted: bool
    saved: bool


class Post(Wire, frozen=True, kw_only=True):
    id: Id
    author: UserSummary
    type: PostType
    caption: str
    media: list[Media]
    mentions: list[str]
    hashtags: list[str]
    counts: PostCounts
    reactions_summary: dict[str, int]
    my: PostMy
    created_at: Timestamp


class PostPage(Wire, frozen=True, kw_only=True):
    items: list[Post]
    next_cursor: Cursor


class CommentCounts(Wire, frozen=True, kw_only=True):
    reactions: Count
    replies: Count


class CommentMy(Wire, frozen=True, kw_only=True):
    reaction: str | None


class Comment(Wire, frozen=True, kw_only=True):
    id: Id
    post_id: Id
    parent_id: Id | None
    author: UserSummary
    text: str
    media: Media | None
    mentions: list[str]
    counts: CommentCounts
    my: CommentMy
    created_at: Timestamp


class CommentPage(Wire, frozen=True, kw_only=True):
    items: list[Comment]
    next_cursor: Cursor
