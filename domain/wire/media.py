"""Media: uploads and what they are once checked."""

from __future__ import annotations

from typing import Literal

from domain.wire.base import Count, Id, Timestamp, Wire

MediaKind = Literal["image", "video", "audio", "file"]
MediaState = Literal["pending", "ready"]


class Media(Wire, frozen=True, kw_only=True, omit_defaults=True):
    id: Id
    kind: MediaKind
    content_type: str
    size: Count
    url: str
    state: MediaState
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None
    blurhash: str | None = None
    name: str | None = None
    thumbnail_url: str | None = None


class UploadInstructions(Wire, frozen=True, kw_only=True):
    """Send the bytes with `method` to `url`, with exactly `headers`."""

    method: str
    url: str
    headers: dict[str, str]


class CreatedMedia(Wire, frozen=True, kw_only=True):
    media_id: Id
    upload: UploadInstructions
    expires_at: Timestamp
