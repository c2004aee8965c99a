"""Chats and their messages."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from domain.wire.base import Cursor, Id, Inbound, Timestamp, Wire
from domain.wire.media import Media
from domain.wire.text import text_pattern
from domain.wire.users import UserSummary

MessageType = Literal["text", "voice", "image", "video", "audio", "file"]
TEXT_4000 = text_pattern(4000)
TEXT_1000 = text_pattern(1000)


class Message(Wire, frozen=True, kw_only=True):
    """A chat message. `reactions` maps an emoji to the usernames who reacted with it."""

    id: Id
    chat_id: Id
    seq: Annotated[int, msgspec.Meta(ge=1)]
    client_id: str
    sender: UserSummary
    type: MessageType
    text: str | None
    media: Media | None
    caption: str | None
    reply_to: Id | None
    reactions: dict[str, list[str]]
    deleted: bool
    created_at: Timestamp
    edited_at: Timestamp | None


class Chat(Wire, frozen=True, kw_only=True):
    id: Id
    peer: UserSummary
    last_message: Message | None
    unread_count: Annotated[
        int, msgspec.Meta(ge=0, description="The peer's messages after my read position (deleted ones not counted)")
    ]
    updated_at: Timestamp


class ChatPage(Wire, frozen=True, kw_only=True):
    items: list[Chat]
    next_cursor: Cursor


class MessagePage(Wire, frozen=True, kw_only=True):
    """Newest first with `before_seq` (or neither), oldest first with `after_seq`; `has_more` when the page is full
    and more lie beyond it."""

    items: list[Message]
    has_more: bool


ClientId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[ -~]{1,64}$",
        description="The sender's id of this message (printable ASCII): the same again returns the same message",
    ),
]
IdText = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,19}$")]


class NewMessage(Inbound, frozen=True, kw_only=True):
    """`text` for a text message (<= 4,000 characters); `media_id` (your own completed upload for `chat`) and an
    optional `caption` (<= 1,000) for the others: voice and audio take audio, image an image, video a video, file
    any upload; `duration_ms` for voice and audio. The same `client_id` again returns the same message."""

    client_id: ClientId
    type: MessageType
    text: Annotated[str, msgspec.Meta(max_length=4000, extra_json_schema={"pattern": TEXT_4000})] | None = None
    media_id: IdText | None = None
    caption: Annotated[str, msgspec.Meta(max_length=1000, extra_json_schema={"pattern": TEXT_1000})] | None = None
    reply_to: IdText | None = None
    duration_ms: Annotated[int, msgspec.Meta(ge=0, le=24 * 3600 * 1000)] | None = None
