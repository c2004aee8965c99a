"""Notifications: something that happened to the reader."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from domain.wire.base import Cursor, Id, Inbound, Timestamp, Wire
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


class UnreadCount(Wire, frozen=True, kw_only=True):
    count: Annotated[int, msgspec.Meta(ge=0, description="My unread notifications, exactly")]


MAX_MARK_IDS = 100
# Each of `ids`, as the schema says it: the route checks each one itself, to name a bad one by its place (`ids.1`).
_MARK_ID = Annotated[Any, msgspec.Meta(extra_json_schema={"type": "string", "pattern": r"^[0-9]{1,19}$"})]


class MarkRead(Inbound, frozen=True, kw_only=True):
    """Exactly one of: `up_to_id`, to mark every notification of mine with an id up to and including it read; or
    `ids` (1-100), to mark those of them that are mine read (others' ids are ignored). Marking read again
    changes nothing."""

    up_to_id: Id | msgspec.UnsetType = msgspec.UNSET
    ids: Annotated[list[_MARK_ID], msgspec.Meta(min_length=1, max_length=MAX_MARK_IDS)] | msgspec.UnsetType = (
        msgspec.UNSET
    )


# Exactly one of the two (what a struct's schema cannot say: the operation adds it).
MARK_READ_ONE_OF = [{"required": ["up_to_id"]}, {"required": ["ids"]}]
