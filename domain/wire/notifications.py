"""Notifications: something that happened to the reader."""

from __future__ import annotations

from typing import Literal

from domain.wire.base import Cursor, Id, Timestamp, Wire
from domain.wire.posts import Comment, Post
from domain.wire.users import UserSummary

NotificationType = Literal[
    "follow",
    "reaction_post",
    "reaction_comment",
    "comment_post",
    "reply_comment",
    "mention_post",
    "mention_comment",
    "repost",
]


class Notification(Wire, frozen=True, kw_only=True, omit_defaults=True):
    """Something that happened to me, by `actor`, newest first in the inbox. `post` is present on the types about
    a post, `comment` on those about a comment (reaction_comment, comment_post, reply_comment, mention_comment),
    `emoji` on reactions."""

    id: Id
    type: NotificationType
    actor: UserSummary
    post: Post | None = None
    comment: Comment | None = None
    emoji: str | None = None
    created_at: Timestamp
    read: bool


class NotificationPage(Wire, frozen=True, kw_only=True):
    """A page of my notifications, newest first; `next_cursor` is null on the last page."""

    items: list[Notification]
    next_cursor: Cursor
