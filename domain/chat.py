"""The rules of chat messages, checked once at the edge (HTTP route or socket action) before a chat op is made."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

import emoji as emoji_lib

from domain.errors import NotFound, ValidationFailed
from domain.ops import SendMessage
from domain.rules import RuleError, clean_text

MAX_TEXT = 4000
MAX_CAPTION = 1000
MAX_CLIENT_ID = 64
MESSAGE_TYPES = ("text", "voice", "image", "video", "audio", "file")
MAX_ID = (1 << 63) - 1


def object_id(value: Any, name: str) -> int:
    """An id given in a body (a decimal string, or an int from MessagePack): 422 when it cannot be one."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isdigit() and len(value) <= 19:
        number = int(value)
    else:
        raise ValidationFailed({name: "must be an id"})
    if not 0 < number <= MAX_ID:  # no such id can exist: answered as for one that does not
        if name == "media_id":
            raise ValidationFailed({name: f"media {number} is not one of your uploads"}, code="invalid_media")
        raise ValidationFailed({name: "not a message of this chat"})
    return number


def path_id(value: str, what: str) -> int:
    """An id in a path or a socket action's ``chat_id``: one that cannot exist is 404, like one that does not."""
    if not value.isdigit() or len(value) > 19 or not 0 < int(value) <= MAX_ID:
        raise NotFound(f"No such {what}.")
    return int(value)


def text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise ValidationFailed({name: "must be a string"})
    try:
        return clean_text(value, field_max=limit, allow_empty=False)
    except RuleError as exc:
        raise ValidationFailed({name: str(exc)}) from exc


def check_emoji(value: Any) -> str:
    """Exactly one emoji grapheme cluster (skin tones, flags and ZWJ sequences count as one), NFC."""
    if not isinstance(value, str) or not emoji_lib.is_emoji(unicodedata.normalize("NFC", value)):
        raise ValidationFailed({"emoji": "must be exactly one emoji"})
    return unicodedata.normalize("NFC", value)


@dataclass(frozen=True)
class Draft:
    """A send, checked for shape (not yet for what it refers to: that is the chat's entity's job)."""

    client_id: str
    type: str
    text: str | None
    media_id: int | None
    caption: str | None
    duration_ms: int | None
    reply_to: int | None


def check_draft(body: dict[str, Any]) -> Draft:
    """A message body (POST /chats/{id}/messages or the ``chat.send`` action, without ``chat_id``)."""
    client_id = body.get("client_id")
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= MAX_CLIENT_ID or not client_id.isprintable():
        raise ValidationFailed({"client_id": f"1-{MAX_CLIENT_ID} printable characters"})
    type_ = body.get("type")
    if type_ not in MESSAGE_TYPES:
        raise ValidationFailed({"type": f"one of {', '.join(MESSAGE_TYPES)}"})
    body_text = body.get("text")
    media_id = body.get("media_id")
    caption = body.get("caption")
    duration = body.get("duration_ms")
    reply_to = body.get("reply_to")
    if type_ == "text":
        if body_text is None:
            raise ValidationFailed({"text": "a text message needs text"})
        for name, value in (("media_id", media_id), ("caption", caption), ("duration_ms", duration)):
            if value is not None:
                raise ValidationFailed({name: "a text message takes only text"})
        body_text = text(body_text, "text", MAX_TEXT)
    else:
        if media_id is None:
            raise ValidationFailed({"media_id": f"a {type_} message needs media"})
        if body_text is not None:
            raise ValidationFailed({"text": f"a {type_} message takes a caption, not text"})
        media_id = object_id(media_id, "media_id")
        caption = None if caption is None else text(caption, "caption", MAX_CAPTION)
        if duration is not None:
            if type_ not in ("voice", "audio"):
                raise ValidationFailed({"duration_ms": "only voice and audio messages have a duration"})
            if not isinstance(duration, int) or isinstance(duration, bool) or not 0 <= duration <= 24 * 3600 * 1000:
                raise ValidationFailed({"duration_ms": "milliseconds, 0 to 24 hours"})
    return Draft(
        client_id=client_id,
        type=type_,
        text=body_text,
        media_id=media_id,
        caption=caption,
        duration_ms=duration,
        reply_to=None if reply_to is None else object_id(reply_to, "reply_to"),
    )


def send_op(chat_id: int, user_id: int, body: dict[str, Any]) -> SendMessage:
    """The op of a message body (the HTTP route and the ``chat.send`` action share it)."""
    draft = check_draft(body)
    return SendMessage(
        chat_id=chat_id,
        user_id=user_id,
        client_id=draft.client_id,
        type=draft.type,  # type: ignore[arg-type]  # one of MESSAGE_TYPES, checked
        text=draft.text,
        media_id=draft.media_id,
        caption=draft.caption,
        duration_ms=draft.duration_ms,
        reply_to=draft.reply_to,
    )
