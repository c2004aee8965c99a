"""Media shapes: the POST /media body, its answer, the Media object, and the avatar body."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from api.schemas.common import Strict
from domain.media_rules import KIND_OF, MAX_BYTES, NAME_PATTERN

MediaIdStr = Annotated[str, Field(pattern=r"^[0-9]{1,20}$", description="A media id from POST /media")]


class CreateMedia(Strict):
    """Declare an upload: what it is for, its content type and its exact size in bytes."""

    purpose: Literal["post", "comment", "avatar", "chat"]
    content_type: str = Field(
        min_length=3,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*( *;[ -~]*)?$",
        examples=["image/jpeg"],
        description="One of: " + ", ".join(sorted(KIND_OF)) + " (parameters such as `; charset=utf-8` are "
        "ignored). Anything else is 422 `unsupported_content_type`. Checked against the bytes on complete",
    )
    size: int = Field(
        ge=1,
        le=max(MAX_BYTES.values()),
        description="The exact size in bytes (the upload must match it). At most: image 20 MB, video 200 MB, "
        "audio 50 MB, file 100 MB (MB = 2^20 bytes)",
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        pattern=NAME_PATTERN,
        description="The file's name, if any: no control characters, no slashes",
    )


class UploadInstructions(BaseModel):
    method: str = Field(examples=["PUT"])
    url: str
    headers: dict[str, str] = Field(description="Send exactly these headers with the bytes")


class CreatedMedia(BaseModel):
    media_id: str
    upload: UploadInstructions
    expires_at: str


class Media(BaseModel):
    id: str
    kind: Literal["image", "video", "audio", "file"]
    content_type: str
    size: int
    url: str = Field(description="Stable once the media is attached somewhere public; signed and expiring before")
    state: Literal["pending", "ready"]
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None
    blurhash: str | None = None
    name: str | None = None
    thumbnail_url: str | None = Field(default=None, description="A JPEG of at most 320 px (images)")


class SetAvatar(Strict):
    media_id: MediaIdStr
