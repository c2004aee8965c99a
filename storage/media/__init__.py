"""Media objects: where uploaded bytes live (DESIGN.md 5).

Two backends with one interface, picked by ``MEDIA_BACKEND``:

* ``local`` (default): files under ``MEDIA_DIR`` (``var/media``); uploads and downloads go through the api itself,
  on URLs signed with an HMAC and an expiry (``storage/media/local.py``, routes in ``api/routes/media.py``).
* ``gcs``: a Google Cloud Storage bucket; the client uploads and downloads straight to and from GCS on V4 signed
  URLs (``storage/media/gcs.py``).

The api and the actors see only ``MediaBackend``: object keys, ranged reads for the content checks, a whole read
for images (at most the image limit), a write for the cleaned image and its thumbnail, and URLs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class UploadTarget:
    """How the client sends the bytes: ``method`` to ``url`` with exactly ``headers``, before ``expires_at``."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    expires_at: dt.datetime = dt.datetime.min


class MediaBackend(Protocol):
    name: str

    def upload_target(
        self, media_id: int, key: str, content_type: str, size: int, expires_at: dt.datetime
    ) -> UploadTarget: ...

    async def stat(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is no object."""

    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` (fewer at the end of the object)."""

    async def read_all(self, key: str) -> bytes: ...

    async def write(self, key: str, data: bytes, content_type: str) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def promote(self, src: str, dst: str) -> None:
        """Move the object at ``src`` to ``dst`` (replacing it)."""

    def signed_download_url(self, key: str, content_type: str, disposition: str, expires_at: dt.datetime) -> str | None:
        """A URL the client can GET directly (gcs); None where the api serves the bytes itself (local)."""

    def close(self) -> None: ...


def object_key(media_id: int) -> str:
    """The key of a media id's checked original (``media/<id>``); its thumbnail is ``media/<id>.thumb.jpg``."""
    return f"media/{media_id}"


def incoming_key(media_id: int) -> str:
    """Where the client's upload lands (``media/<id>.upload``). ``complete`` checks it and only then writes the
    original: bytes uploaded after the check can never take the checked object's place."""
    return f"media/{media_id}.upload"


def thumb_key(media_id: int) -> str:
    return f"media/{media_id}.thumb.jpg"
