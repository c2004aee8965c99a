"""GET /search: a page of posts, users or hashtags, each item with its score and its `kind`."""

from __future__ import annotations

from typing import Annotated

import msgspec

from domain.wire.base import Count, Cursor, Wire
from domain.wire.posts import Post
from domain.wire.users import UserSummary

HitScore = Annotated[float, msgspec.Meta(description="How well it matches, best first (see the operation)")]


class PostHit(Post, frozen=True, kw_only=True, tag_field="kind", tag="post"):
    """A post that matches (`type=posts`): a Post with `kind: post` and its `score`."""

    score: Annotated[float, msgspec.Meta(description="Relevance x engagement x recency (see the operation)")]


class UserHit(UserSummary, frozen=True, kw_only=True, omit_defaults=True, tag_field="kind", tag="user"):
    """A user who matches (`type=users`): a UserSummary (with my flags, given a token) with `kind: user` and its
    `score`."""

    score: HitScore


class HashtagHit(Wire, frozen=True, kw_only=True, tag_field="kind", tag="hashtag"):
    """A hashtag that matches (`type=hashtags`), with `kind: hashtag` and its `score`."""

    tag: str
    posts_count: Count
    score: HitScore


SearchHit = PostHit | UserHit | HashtagHit


class SearchPage(Wire, frozen=True, kw_only=True):
    """A page of search results, best first. Every item is of the kind the search's `type` asked for, and says so
    in `kind` (`post`, `user` or `hashtag`): switch on it to read the item. `corrected_query` is the query the page
    is for when words were corrected ("showing results for ..."), else null."""

    items: list[SearchHit]
    next_cursor: Cursor
    corrected_query: str | None
