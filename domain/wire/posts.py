"""Posts, comments and what engagement answers."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from domain.posts import MAX_CAPTION, MAX_COMMENT, MAX_MEDIA
from domain.wire.base import Count, Cursor, Id, Inbound, Timestamp, Wire
from domain.wire.media import Media
from domain.wire.text import text_pattern
from domain.wire.users import UserSummary

PostType = Literal["photo", "video", "reel"]
CAPTION_PATTERN = text_pattern(MAX_CAPTION, allow_empty=True)
COMMENT_PATTERN = text_pattern(MAX_COMMENT)


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


# ------------------------------------------------------------ what a client sends


class NewPost(Inbound, frozen=True, kw_only=True):
    """A photo post takes 1-10 images, a video or reel exactly one video: your own completed uploads made with
    `purpose: post`. The caption (<= 2,200 characters) may mention `@users` and carry `#hashtags`."""

    type: PostType
    caption: Annotated[str, msgspec.Meta(max_length=MAX_CAPTION, pattern=CAPTION_PATTERN)] | None = None
    media_ids: Annotated[
        list[Id], msgspec.Meta(min_length=1, max_length=MAX_MEDIA, extra_json_schema={"uniqueItems": True})
    ]


class NewComment(Inbound, frozen=True, kw_only=True):
    """Text (<= 2,000 characters, may mention `@users`) and/or `media_id` (your own completed upload made with
    `purpose: comment`, an image or video); at least one."""

    text: Annotated[str, msgspec.Meta(max_length=MAX_COMMENT, pattern=COMMENT_PATTERN)] | None = None
    media_id: Id | None = None


# At least one of text and media_id, as a string (what a struct's schema cannot say: the operations add it).
NEW_COMMENT_ANY_OF = [
    {"required": ["text"], "properties": {"text": {"type": "string"}}},
    {"required": ["media_id"], "properties": {"media_id": {"type": "string"}}},
]


class NewReaction(Inbound, frozen=True, kw_only=True):
    emoji: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=32,
            description="Exactly one emoji (skin tones, flags and ZWJ sequences count as one)",
        ),
    ]


# ------------------------------------------------------------ what engagement answers


class Hashtag(Wire, frozen=True, kw_only=True):
    tag: str
    posts_count: Count


class PostEngagement(Wire, frozen=True, kw_only=True):
    """A post's counts and my reaction, repost and save, as a reaction leaves them."""

    post_id: Id
    counts: PostCounts
    reactions_summary: dict[str, int]
    my: PostMy


class CommentEngagement(Wire, frozen=True, kw_only=True):
    """A comment's counts and my reaction, as a reaction leaves them."""

    comment_id: Id
    post_id: Id
    counts: CommentCounts
    my: CommentMy


class Reposted(Wire, frozen=True, kw_only=True):
    reposted: bool


class Saved(Wire, frozen=True, kw_only=True):
    saved: bool


class Reactor(Wire, frozen=True, kw_only=True):
    """Who reacted, with which emoji, when."""

    user: UserSummary
    emoji: str
    created_at: Timestamp


class ReactorPage(Wire, frozen=True, kw_only=True):
    """A page of reactions, newest first; `next_cursor` is null on the last page."""

    items: list[Reactor]
    next_cursor: Cursor
