"""/media: declare an upload, send its bytes, complete it, download it (issue 9).

* ``POST /media`` declares purpose, content type and exact size, and answers where to send the bytes: with the
  ``local`` backend ``PUT /media/{id}/upload`` on this api (signed, expiring), with ``gcs`` a V4 signed URL of
  the bucket.
* ``PUT /media/{id}/upload`` (local backend) streams the body to a temporary file, a megabyte at a time, and
  stops at the first byte past the declared size (413; nothing is kept). Each chunk must arrive within
  ``CHUNK_IDLE_S``; the whole upload within a deadline that allows 64 KB/s.
* ``POST /media/{id}/complete`` (owner only) checks what arrived (api/uploads.py) and answers the Media object.
* ``GET /media/{id}`` and ``GET /media/{id}/thumbnail`` serve the bytes (local) or redirect to a signed GCS URL:
  to anyone once the media is public (an avatar, a post), else with the URL's signature or the owner's token.
  Anything else is 404, so nobody learns which ids exist.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.requests import ClientDisconnect

from api.contract import PathId, body, operation
from api.deps import Ctx, MaybeUser, User, WriteLimit, ctx_of
from api.responses import Encoded, encoded
from api.routes.users import OPTIONAL_BEARER
from api.uploads import MediaService
from domain.errors import Conflict, Forbidden, MalformedBody, NotFound, PayloadTooLarge, UnsupportedMediaType
from domain.media_rules import normalize_type
from domain.wire.media import CreatedMedia, Media, NewMedia

router = APIRouter(tags=["media"])

MediaId = Annotated[PathId, Path(description="A media id")]
Expires = Annotated[str | None, Query(max_length=12)]
Signature = Annotated[str | None, Query(max_length=64)]
CHUNK_IDLE_S = 30.0  # a chunk of the body must arrive within this long
MIN_RATE = 64 * 1024  # bytes per second the whole-upload deadline allows for


def _download(operation_id: str, ctype: str) -> dict[str, Any]:
    """A download's operation: the bytes (200, of type ``ctype``), or with the gcs backend a redirect (302)."""
    made = operation(
        operation_id,
        description="The bytes",
        also={302: (None, "With MEDIA_BACKEND=gcs: to a signed URL of the object")},
        errors=(404,),
        extra=OPTIONAL_BEARER,  # public media (a post's, an avatar) needs no token
    )
    made["openapi_extra"]["responses"]["200"]["content"] = {ctype: {}}
    return made


def _media(request: Request) -> MediaService:
    service: MediaService = ctx_of(request).media
    return service


@router.post(
    "/media",
    **operation(
        "createUpload",
        ok=CreatedMedia,
        status=201,
        request=NewMedia,
        errors=(400, 401, 413, 415, 422, 429),
    ),
    dependencies=[WriteLimit],
)
async def create_media(request: Request, user: User, payload: NewMedia = body(NewMedia)) -> Encoded:
    """Declare an upload. Images (<= 20 MB) for avatars; images and video (<= 200 MB) for posts and comments;
    chat also audio (<= 50 MB) and files (<= 100 MB). Send the bytes as `upload` says, then complete it."""
    service = _media(request)
    row, target = await service.create(user.user_id, payload.purpose, payload.content_type, payload.size, payload.name)
    return encoded(request, service.created(row, target), status_code=201)


@router.put(
    "/media/{media_id}/upload",
    **operation(
        "uploadMediaBytes",
        status=204,
        description="Received: complete the media next",
        errors=(400, 403, 404, 409, 413, 415),
        extra={
            "requestBody": {
                "required": True,
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    ),
)
async def upload_media(
    request: Request, media_id: MediaId, expires: Expires = None, signature: Signature = None
) -> Response:
    """The bytes of a declared upload (local backend), on the signed URL `POST /media` answered, with its headers.
    Exactly the declared size; one byte more is 413 and nothing is kept."""
    service = _media(request)
    if service.backend.name != "local":
        raise NotFound("Uploads go to the URL POST /media answered.")
    reason = service.signer.check("PUT", media_id, "upload", expires, signature)
    if reason is not None:
        raise Forbidden("This upload URL is not valid.", details={"reason": f"url_{reason}"})
    row = await service.find(media_id)
    if row is None:
        raise NotFound("No such media.")
    if row["state"] != "pending":
        raise Conflict("This media is already complete.", code="already_completed")
    if normalize_type(request.headers.get("content-type", "")) != row["content_type"]:
        raise UnsupportedMediaType(
            f"Send Content-Type: {row['content_type']}, as declared.", details={"expected": row["content_type"]}
        )
    declared = int(row["declared_size"])
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise MalformedBody("Content-Length is not a number.")
        if int(length) > declared:
            raise PayloadTooLarge(details={"max_bytes": declared})
    await _receive(request, service, media_id, declared)
    return Response(status_code=204)


async def _receive(request: Request, service: MediaService, media_id: int, declared: int) -> None:
    upload = service.open_upload(media_id)
    deadline = time.monotonic() + 60.0 + declared / MIN_RATE
    chunks = request.stream().__aiter__()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise MalformedBody("The upload was too slow; start again.", code="upload_timeout")
            try:
                async with asyncio.timeout(min(CHUNK_IDLE_S, left)):
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise MalformedBody("The upload stalled; start again.", code="upload_timeout") from None
            if upload.size + len(chunk) > declared:
                raise PayloadTooLarge(
                    f"The upload is larger than the {declared} bytes declared.", details={"max_bytes": declared}
                )
            if chunk:
                await upload.write(chunk)
        await upload.commit()
    except ClientDisconnect:
        await upload.abort()
        raise MalformedBody("The client went away mid-upload.") from None
    except BaseException:
        await upload.abort()
        raise


@router.post(
    "/media/{media_id}/complete", **operation("completeUpload", ok=Media, errors=(401, 404, 409, 422, 429, 503))
)
async def complete_media(request: Request, media_id: MediaId, user: User) -> Encoded:
    """Check the uploaded bytes (size, magic bytes against the declared type; images decoded, cleaned of
    EXIF/GPS, measured, blurhashed, thumbnailed) and make the media ready to attach. Owner only; once."""
    service = _media(request)
    row = await service.complete(user.user_id, media_id)
    return encoded(request, service.view(row))


@router.get("/media/{media_id}", **_download("getMedia", "*/*"), response_class=Response)
async def download_media(
    request: Request,
    media_id: MediaId,
    viewer: MaybeUser,
    ctx: Ctx,
    expires: Expires = None,
    signature: Signature = None,
) -> Response:
    """The media's bytes: to anyone once public, else on a signed URL or to the owner."""
    return await _serve(request, ctx, media_id, "original", viewer, expires, signature)


@router.get("/media/{media_id}/thumbnail", **_download("getMediaThumbnail", "image/jpeg"), response_class=Response)
async def download_thumbnail(
    request: Request,
    media_id: MediaId,
    viewer: MaybeUser,
    ctx: Ctx,
    expires: Expires = None,
    signature: Signature = None,
) -> Response:
    """An image's thumbnail (JPEG, at most 320 px), under the same rules as the media."""
    return await _serve(request, ctx, media_id, "thumb", viewer, expires, signature)


async def _serve(
    request: Request,
    ctx: Ctx,
    media_id: int,
    variant: str,
    viewer: Any,
    expires: str | None,
    signature: str | None,
) -> Response:
    service = _media(request)
    row = await service.find(media_id)
    if row is None or row["state"] != "ready" or (variant == "thumb" and row["thumb_key"] is None):
        raise NotFound("No such media.")
    public = bool(row["public"])
    allowed = (
        public
        or service.signer.check("GET", media_id, variant, expires, signature) is None
        or (viewer is not None and viewer.user_id == row["owner_id"])
    )
    if not allowed:
        raise NotFound("No such media.")
    key = row["thumb_key"] if variant == "thumb" else row["object_key"]
    ctype = "image/jpeg" if variant == "thumb" else row["content_type"]
    disposition = _disposition(row, variant)
    cache = "public, max-age=31536000, immutable" if public else "private, max-age=3600"
    url = _gcs_url(service, media_id, variant, key, ctype, disposition)
    if url is not None:
        return RedirectResponse(url, status_code=302, headers={"Cache-Control": "private, max-age=600"})
    path = service.backend.local_path(key)  # type: ignore[attr-defined]
    if path is None:
        raise NotFound("No such media.")
    return FileResponse(
        path,
        media_type=ctype,
        headers={
            "Cache-Control": cache,
            "Content-Disposition": disposition,
            # Served from the API's origin: never run as a page, whatever the bytes are.
            "Content-Security-Policy": "sandbox; default-src 'none'",
        },
    )


def _disposition(row: Any, variant: str) -> str:
    as_file = row["kind"] == "file" and variant == "original"
    name = row["name"] or f"{row['id']}"
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._- ") else "_" for ch in name)[:100] or "file"
    return f'{"attachment" if as_file else "inline"}; filename="{safe}"'


def _gcs_url(service: MediaService, media_id: int, variant: str, key: str, ctype: str, disposition: str) -> str | None:
    """A signed GCS URL for this object (None with the local backend): the service keeps it while more than half
    its life is left."""
    return service.signed_download(media_id, variant, key, ctype, disposition)
