"""Media uploads (issue 9): ``create`` a pending upload, ``complete`` it after checking what arrived, attach it.

Runs in the api process (no Ray hop: a media row belongs to its uploader and nothing else contends for it).
``check_*`` validate and authorize, ``do_*``-style steps write; the heavy part, decoding and re-encoding an image,
runs in a small bounded thread pool (``ImageWorkers``): a burst of completes waits a little for a thread, then
gets 503 with Retry-After, instead of queueing without end.

Completing checks, in this order, each failure a 4xx that leaves the row pending (the client may upload again):
the upload exists (``upload_missing``), has exactly the declared size (``size_mismatch``), its magic bytes fit
the declared type (``content_type_mismatch``), and an image decodes as that type (``invalid_image``). The checked
bytes are then written as the object (images cleaned of their metadata) and the row becomes ready, once: a
second complete is 409 ``already_completed``.

Other entities attach media with ``check_attachable`` (actors/media.py) inside their own transaction.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import asyncpg

from actors.runtime.services import Services
from domain import media_inspect as inspect
from domain import media_rules as rules
from domain import present
from domain.errors import Conflict, NotFound, Unavailable, ValidationFailed
from domain.present import media_url
from domain.signing import UrlSigner
from domain.wire.media import CreatedMedia, Media, UploadInstructions
from storage import ids
from storage.media import MediaBackend, UploadTarget, incoming_key, object_key, thumb_key
from storage.media import store as media_store
from storage.media.backends import url_signer
from storage.media.local import Upload

log = logging.getLogger("i9lyfe.media")
T = TypeVar("T")

PRIVATE_URL_TTL_S = 24 * 3600  # a signed download URL of not-yet-public media works for a day


class ImageWorkers:
    """At most ``concurrency`` images decoded at once; at most ``max_waiting`` waiting, ``start_deadline_s`` each."""

    def __init__(self, concurrency: int = 2, *, max_waiting: int = 32, start_deadline_s: float = 5.0) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="image")
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self.waiting = 0
        self.max_waiting = max_waiting
        self.start_deadline_s = start_deadline_s

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self.waiting >= self.max_waiting:
            raise Unavailable("Too many images are being processed; try again shortly.", retry_after=2)
        self.waiting += 1
        try:
            async with asyncio.timeout(self.start_deadline_s):
                await self._slots.acquire()
        except TimeoutError:
            raise Unavailable("Too many images are being processed; try again shortly.", retry_after=2) from None
        finally:
            self.waiting -= 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._slots.release()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def create_media_service(services: Services) -> MediaService:
    return MediaService(
        services, services.media_backend, url_signer(services.settings), services.settings.public_base_url
    )


GCS_URL_TTL_S = 3600  # a redirect's signed GCS URL; re-signed when less than half is left
SIGNED_MAX = 10_000


class MediaService:
    def __init__(self, services: Services, backend: MediaBackend, signer: UrlSigner, base_url: str) -> None:
        self.services = services
        self.backend = backend
        self.signer = signer
        self.base_url = base_url.rstrip("/")
        self.images = ImageWorkers(services.settings.hash_concurrency)
        self._signed: dict[tuple[int, str], tuple[str, float]] = {}  # (media, variant) -> (GCS URL, expiry)

    def signed_download(self, media_id: int, variant: str, key: str, ctype: str, disposition: str) -> str | None:
        """A signed GCS URL of this object (None with the local backend), re-used while more than half its life
        is left (signing costs an RSA operation; pitfall 41 was re-signing on every read)."""
        if self.backend.name == "local":
            return None
        now = time.time()
        cached = self._signed.get((media_id, variant))
        if cached is not None and cached[1] - now > GCS_URL_TTL_S / 2:
            return cached[0]
        expires_at = dt.datetime.fromtimestamp(now + GCS_URL_TTL_S, dt.UTC)
        url = self.backend.signed_download_url(key, ctype, disposition, expires_at)
        if url is None:
            return None
        if len(self._signed) >= SIGNED_MAX:
            self._signed.clear()
        self._signed[(media_id, variant)] = (url, now + GCS_URL_TTL_S)
        return url

    def close(self) -> None:
        self.images.close()  # the backend is the process's (services.media_backend), closed with the services

    # ------------------------------------------------------------ create

    async def create(
        self, owner_id: int, purpose: str, content_type: str, size: int, name: str | None
    ) -> tuple[asyncpg.Record, UploadTarget]:
        kind, ctype, name = rules.check_upload(purpose, content_type, size, name)
        pool = self.services.pool
        now = dt.datetime.now(dt.UTC)
        since = now - dt.timedelta(seconds=rules.UPLOAD_TTL_S)
        if await media_store.count_recent_pending(pool, owner_id, since) >= rules.MAX_PENDING:
            raise ValidationFailed(
                message=f"At most {rules.MAX_PENDING} uploads may wait to be completed; complete some first.",
                code="too_many_pending_uploads",
            )
        media_id = ids.new_id()
        expires_at = now + dt.timedelta(seconds=rules.UPLOAD_TTL_S)
        row = await media_store.insert_media(
            pool,
            media_id=media_id,
            owner_id=owner_id,
            purpose=purpose,
            kind=kind,
            content_type=ctype,
            declared_size=size,
            name=name,
            object_key=object_key(media_id),
            upload_expires_at=expires_at,
        )
        target = self.backend.upload_target(media_id, incoming_key(media_id), ctype, size, expires_at)
        return row, target

    def created(self, row: asyncpg.Record, target: UploadTarget) -> CreatedMedia:
        """What ``POST /media`` answers: the new media's id and where to send its bytes."""
        return CreatedMedia(
            media_id=str(row["id"]),
            upload=UploadInstructions(method=target.method, url=target.url, headers=target.headers),
            expires_at=present.rfc3339(target.expires_at),
        )

    # ------------------------------------------------------------ the bytes (local backend)

    async def find(self, media_id: int) -> asyncpg.Record | None:
        """A media row, whoever owns it (an upload URL or a download decides who may use it)."""
        return await media_store.find_media(self.services.pool, media_id)

    def open_upload(self, media_id: int) -> Upload:
        """Where the bytes of a declared upload are written as they arrive (local backend)."""
        upload: Upload = self.backend.open_upload(incoming_key(media_id))  # type: ignore[attr-defined]
        return upload

    # ------------------------------------------------------------ complete

    async def owned(self, owner_id: int, media_id: int) -> asyncpg.Record:
        """The caller's media row; 404 for a missing id and for someone else's alike."""
        row = await media_store.find_media(self.services.pool, media_id)
        if row is None or row["owner_id"] != owner_id:
            raise NotFound("No such media.")
        return row

    async def complete(self, owner_id: int, media_id: int) -> asyncpg.Record:
        row = await self.owned(owner_id, media_id)
        if row["state"] == "ready":
            raise Conflict("This media is already complete.", code="already_completed")
        incoming = incoming_key(media_id)
        size = await self.backend.stat(incoming)
        if size is None:
            raise ValidationFailed(message="Nothing was uploaded for this media yet.", code="upload_missing")
        if size != row["declared_size"]:
            await self.backend.delete(incoming)
            raise ValidationFailed(
                message=f"The upload has {size} bytes, not the {row['declared_size']} declared.",
                code="size_mismatch",
                details={"declared": row["declared_size"], "received": size},
            )
        ctype = row["content_type"]
        head = await self.backend.read_range(incoming, 0, inspect.HEAD_BYTES if ctype[:5] != "text/" else 8192)
        if not inspect.matches(ctype, head):
            await self.backend.delete(incoming)
            detected = inspect.sniff(head)
            raise ValidationFailed(
                message=f"The uploaded bytes are not {ctype}.",
                code="content_type_mismatch",
                details={"declared": ctype, "detected": detected},
            )
        facts: dict[str, Any] = {"size": size, "content_type": ctype}
        if row["kind"] == "image":
            data = await self.backend.read_all(incoming)
            try:
                clean = await self.images.run(inspect.process_image, data, ctype)
            except inspect.BadImage as exc:
                await self.backend.delete(incoming)
                raise ValidationFailed(message=f"The image cannot be used: {exc}.", code="invalid_image") from exc
            del data
            await self.backend.write(thumb_key(media_id), clean.thumbnail, "image/jpeg")
            await self.backend.write(row["object_key"], clean.data, ctype)
            await self.backend.delete(incoming)
            facts.update(
                size=len(clean.data),
                width=clean.width,
                height=clean.height,
                blurhash=clean.blurhash,
                thumb_key=thumb_key(media_id),
            )
        else:
            if inspect.sniff(head) == "isobmff":

                async def read_at(offset: int, length: int) -> bytes:
                    return await self.backend.read_range(incoming, offset, length)

                facts["duration_ms"] = await inspect.mp4_duration_ms(read_at, size)
            await self.backend.promote(incoming, row["object_key"])
        done = await media_store.complete_media(self.services.pool, media_id, facts)
        if done is None:
            raise Conflict("This media is already complete.", code="already_completed")
        log.info("media complete", extra={"fields": {"media_id": media_id, "kind": row["kind"], "size": facts["size"]}})
        return done

    # ------------------------------------------------------------ presenting

    def url(self, row: asyncpg.Record | dict[str, Any], variant: str = "original") -> str:
        return media_url(self.base_url, self.signer, row, variant)

    def view(self, row: asyncpg.Record | dict[str, Any]) -> Media:
        return present.media(self.base_url, self.signer, row)
