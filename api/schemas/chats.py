"""Chat shapes: Chat, Message and their pages, and the bodies of the chat endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from api.schemas.common import Strict
from api.schemas.fields import text_pattern
from api.schemas.media import Media
from api.schemas.users import UserSummary

IdStr = Annotated[str, Field(pattern=r"^[0-9]{1,19}$")]
MessageType = Literal["text", "voice", "image", "video", "audio", "file"]


class Message(BaseModel):
    id: str
    chat_id: str
    seq: int
    client_id: str
    sender: UserSummary
    type: MessageType
    text: str | None
    media: Media | None
    caption: str | None
    reply_to: str | None
    reactions: dict[str, list[str]] = Field(description="emoji -> usernames who reacted with it")
    deleted: bool
    created_at: str
    edited_at: str | None


class Chat(BaseModel):
    id: str
    peer: UserSummary
    last_message: Message | None
    unread_count: int = Field(description="The peer's messages after my read position (deleted ones not counted)")
    updated_at: str


class ChatPage(BaseModel):
    items: list[Chat]
    next_cursor: str | None


class MessagePage(BaseModel):
    """Newest first with `before_seq` (or neither), oldest first with `after_seq`; `has_more` when the page is
    full and more lie beyond it."""

    items: list[Message]
    has_more: bool


class StartChat(Strict):
    username: str = Field(min_length=3, max_length=30, pattern=r"^[A-Za-z0-9_.]{3,30}$")


class SendMessage(Strict):
    """`text` for a text message (<= 4,000 characters); `media_id` (your own completed upload for `chat`) and an
    optional `caption` (<= 1,000) for the others: voice and audio take audio, image an image, video a video,
    file any upload; `duration_ms` for voice and audio. The same `client_id` again returns the same message."""

    client_id: str = Field(min_length=1, max_length=64, pattern=r"^[ -~]{1,64}$")
    type: MessageType
    text: str | None = Field(default=None, max_length=4000, pattern=text_pattern(4000))
    media_id: IdStr | None = None
    caption: str | None = Field(default=None, max_length=1000, pattern=text_pattern(1000))
    reply_to: IdStr | None = None
    duration_ms: int | None = Field(default=None, ge=0, le=24 * 3600 * 1000)


class EditMessage(Strict):
    text: str = Field(min_length=1, max_length=4000, pattern=text_pattern(4000))


class React(Strict):
    emoji: str = Field(
        min_length=1, max_length=32, description="Exactly one emoji (skin tones, flags, ZWJ count as one)"
    )


class ReadUpTo(Strict):
    seq: int = Field(ge=0, le=(1 << 62))
