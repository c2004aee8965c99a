"""The rules of posts and comments, checked once at the edge (the route) before an op is made: lengths, cleaned
text, media id lists, and the hash that tells an idempotent retry from another request under the same key."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from domain.errors import ValidationFailed
from domain.rules import RuleError, clean_text

MAX_CAPTION = 2200
MAX_MEDIA = 10
MAX_COMMENT = 2000
POST_TYPES = ("photo", "video", "reel")
MAX_ID = (1 << 63) - 1


def body_hash(body: dict[str, Any]) -> bytes:
    """The request's identity for Idempotency-Key: the same key with another body is 422."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).digest()


def media_id(value: str, field: str) -> int:
    """A media id of a body: 1-19 digits (else 422 for its shape); one that cannot exist (0, past 64 bits) is
    answered as an upload of someone else's would be (422 ``invalid_media``), never looked up."""
    if not value.isdigit() or len(value) > 19:
        raise ValidationFailed({field: "must be media ids" if field == "media_ids" else "must be a media id"})
    if not 0 < int(value) <= MAX_ID:
        raise ValidationFailed({field: f"media {value} is not one of your uploads"}, code="invalid_media")
    return int(value)


def check_post(type_: str, caption: str | None, media_ids: list[str]) -> tuple[str, str, list[int]]:
    """A new post's type, cleaned caption and media ids (1-10, distinct; one for a video or reel)."""
    if type_ not in POST_TYPES:
        raise ValidationFailed({"type": "one of photo, video, reel"})
    try:
        clean = clean_text(caption or "", field_max=MAX_CAPTION, allow_empty=True)
    except RuleError as exc:
        raise ValidationFailed({"caption": str(exc)}) from exc
    if not 1 <= len(media_ids) <= MAX_MEDIA:
        raise ValidationFailed({"media_ids": f"1-{MAX_MEDIA} media ids"})
    ids = [media_id(value, "media_ids") for value in media_ids]
    if len(set(ids)) != len(ids):
        raise ValidationFailed({"media_ids": "each media at most once"})
    if type_ in ("video", "reel") and len(ids) != 1:
        raise ValidationFailed({"media_ids": f"a {type_} has exactly one video"})
    return type_, clean, ids


def check_comment(text: str | None, media: str | None) -> tuple[str, int | None]:
    """A comment's cleaned text (<= 2,000; may be empty with media) and media id: one of them is required."""
    if text is None and media is None:
        raise ValidationFailed({"text": "a comment needs text or a media_id"})
    clean = ""
    if text is not None:
        try:
            clean = clean_text(text, field_max=MAX_COMMENT, allow_empty=media is not None)
        except RuleError as exc:
            raise ValidationFailed({"text": str(exc)}) from exc
    return clean, None if media is None else media_id(media, "media_id")
