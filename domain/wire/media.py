"""Media: uploads and what they are once checked."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from domain.media_rules import KIND_OF, MAX_BYTES, NAME_PATTERN
from domain.wire.base import Count, Id, Inbound, Timestamp, Wire

MediaKind = Literal["image", "video", "audio", "file"]
MediaState = Literal["pending", "ready"]


class Media(Wire, frozen=True, kw_only=True, omit_defaults=True):
    id: Id
    kind: MediaKind
    content_type: str
    size: Count
    url: Annotated[
        str, msgspec.Meta(description="Stable once the media is attached somewhere public; signed and expiring before")
    ]
    state: MediaState
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None
    blurhash: str | None = None
    name: str | None = None
    thumbnail_url: Annotated[str, msgspec.Meta(description="A JPEG of at most 320 px (images)")] | None = None


class UploadInstructions(Wire, frozen=True, kw_only=True):
    """Send the bytes with `method` to `url`, with exactly `headers`."""

    method: Annotated[str, msgspec.Meta(examples=["PUT"])]
    url: str
    headers: Annotated[dict[str, str], msgspec.Meta(description="Send exactly these headers with the bytes")]


class CreatedMedia(Wire, frozen=True, kw_only=True):
    media_id: Id
    upload: UploadInstructions
    expires_at: Timestamp


class NewMedia(Inbound, frozen=True, kw_only=True):
    """Declare an upload: what it is for, its content type and its exact size in bytes."""

    purpose: Literal["post", "comment", "avatar", "chat"]
    content_type: Annotated[
        str,
        msgspec.Meta(
            min_length=3,
            max_length=100,
            pattern=r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*( *;[ -~]*)?$",
            examples=["image/jpeg"],
            description="One of: " + ", ".join(sorted(KIND_OF)) + " (parameters such as `; charset=utf-8` are "
            "ignored). Anything else is 422 `unsupported_content_type`. Checked against the bytes on complete",
        ),
    ]
    size: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=max(MAX_BYTES.values()),
            description="The exact size in bytes (the upload must match it). At most: image 20 MB, video 200 MB, "
            "audio 50 MB, file 100 MB (MB = 2^20 bytes)",
        ),
    ]
    name: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=255,
                pattern=NAME_PATTERN,
                description="The file's name, if any: no control characters, no slashes",
            ),
        ]
        | None
    ) = None
