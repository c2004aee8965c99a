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


class Typing(Wire, frozen=True, kw_only=True):
    """What the `chat.typing` action answers: my typing state in the chat as it now stands."""

    chat_id: Id
    typing: bool


# ------------------------------------------------------------ what a client sends

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
MessageText = Annotated[str, msgspec.Meta(max_length=4000, extra_json_schema={"pattern": TEXT_4000})]
Caption = Annotated[str, msgspec.Meta(max_length=1000, extra_json_schema={"pattern": TEXT_1000})]
DurationMs = Annotated[int, msgspec.Meta(ge=0, le=24 * 3600 * 1000, description="Milliseconds (0 to 24 hours)")]
MediaId = Annotated[
    str, msgspec.Meta(pattern=r"^[0-9]{1,19}$", description="Your own completed upload made with `purpose: chat`")
]
ReplyTo = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,19}$", description="A message of this chat")]
# A field another message type takes: null (the same as leaving it out) or absent.
NotTaken = Annotated[None, msgspec.Meta(description="Not taken by this message type: leave it out (null is ignored)")]


class NewTextMessage(Inbound, frozen=True, kw_only=True):
    """A text message: `text` (<= 4,000 characters)."""

    client_id: ClientId
    type: Literal["text"]
    text: MessageText
    reply_to: ReplyTo | None = None
    media_id: NotTaken = None
    caption: NotTaken = None
    duration_ms: NotTaken = None


class NewVoiceMessage(Inbound, frozen=True, kw_only=True):
    """A voice message: an audio upload, an optional `caption` (<= 1,000 characters) and `duration_ms`."""

    client_id: ClientId
    type: Literal["voice"]
    media_id: MediaId
    caption: Caption | None = None
    duration_ms: DurationMs | None = None
    reply_to: ReplyTo | None = None
    text: NotTaken = None


class NewAudioMessage(Inbound, frozen=True, kw_only=True):
    """An audio message: an audio upload, an optional `caption` (<= 1,000 characters) and `duration_ms`."""

    client_id: ClientId
    type: Literal["audio"]
    media_id: MediaId
    caption: Caption | None = None
    duration_ms: DurationMs | None = None
    reply_to: ReplyTo | None = None
    text: NotTaken = None


class NewImageMessage(Inbound, frozen=True, kw_only=True):
    """An image message: an image upload and an optional `caption` (<= 1,000 characters)."""

    client_id: ClientId
    type: Literal["image"]
    media_id: MediaId
    caption: Caption | None = None
    reply_to: ReplyTo | None = None
    text: NotTaken = None
    duration_ms: NotTaken = None


class NewVideoMessage(Inbound, frozen=True, kw_only=True):
    """A video message: a video upload and an optional `caption` (<= 1,000 characters)."""

    client_id: ClientId
    type: Literal["video"]
    media_id: MediaId
    caption: Caption | None = None
    reply_to: ReplyTo | None = None
    text: NotTaken = None
    duration_ms: NotTaken = None


class NewFileMessage(Inbound, frozen=True, kw_only=True):
    """A file message: any upload (a photo sent as a document too) and an optional `caption` (<= 1,000
    characters)."""

    client_id: ClientId
    type: Literal["file"]
    media_id: MediaId
    caption: Caption | None = None
    reply_to: ReplyTo | None = None
    text: NotTaken = None
    duration_ms: NotTaken = None


NewMessageOfType = (
    NewTextMessage | NewVoiceMessage | NewAudioMessage | NewImageMessage | NewVideoMessage | NewFileMessage
)
# A new message (the body of POST /chats/{id}/messages, and the `chat.send` action's data with `chat_id`) by its
# `type` (the discriminator): which fields each type takes.
NEW_MESSAGE: dict[str, type[NewMessageOfType]] = {
    "text": NewTextMessage,
    "voice": NewVoiceMessage,
    "audio": NewAudioMessage,
    "image": NewImageMessage,
    "video": NewVideoMessage,
    "file": NewFileMessage,
}


def new_message_type(kind: object) -> str | None:
    """Why ``kind`` (a body's `type`) names no message type, or None when it names one."""
    if kind is None:
        return "is required"
    if not isinstance(kind, str) or kind not in NEW_MESSAGE:
        return f"one of {', '.join(NEW_MESSAGE)}"
    return None


class NewChat(Inbound, frozen=True, kw_only=True):
    """The user to chat with (any case)."""

    username: Annotated[str, msgspec.Meta(min_length=3, max_length=30, pattern=r"^[A-Za-z0-9_.]{3,30}$")]


class MessageEdit(Inbound, frozen=True, kw_only=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=4000, extra_json_schema={"pattern": TEXT_4000})]


class ReadUpTo(Inbound, frozen=True, kw_only=True):
    """I have read the chat up to and including `seq` (never past its last message)."""

    seq: Annotated[int, msgspec.Meta(ge=0, le=1 << 62)]
