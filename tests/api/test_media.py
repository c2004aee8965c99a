"""Media over real HTTP with the local backend: declare, upload on the signed URL, complete, download; avatars;
every kind for chat; and every bad input refused with a clear 4xx and nothing half-kept (row, file, avatar)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from PIL import Image

from domain.signing import UrlSigner
from domain.tokens import MEDIA_URL, derive_key
from tests import media_samples as samples
from tests.conftest import TEST_JWT_SECRET, Server
from tests.support import Api, assert_error

MEDIA = "/api/v1/media"
GPS_IFD = 0x8825


async def declare(api: Api, purpose: str, ctype: str, size: int, **extra: Any) -> Any:
    return await api.post(MEDIA, {"purpose": purpose, "content_type": ctype, "size": size, **extra})


async def send(upload: dict[str, Any], data: bytes, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.request(
            upload["method"], upload["url"], content=data, headers={**upload["headers"], **headers}
        )


async def upload(api: Api, purpose: str, ctype: str, data: bytes, **extra: Any) -> dict[str, Any]:
    made = await declare(api, purpose, ctype, len(data), **extra)
    assert made.status == 201, made.body
    sent = await send(made.body["upload"], data)
    assert sent.status_code == 204, sent.text
    done = await api.post(f"{MEDIA}/{made.body['media_id']}/complete")
    assert done.status == 200, done.body
    return dict(done.body)


def media_files(server: Server, media_id: str) -> list[str]:
    """Every file the local backend holds for this media id (the object, its thumbnail, uploads in progress)."""
    root = Path(server.env["VAR_DIR"]) / "media" / "media"
    return sorted(p.name for p in root.glob(f"*{media_id}*"))


async def row_of(db: asyncpg.Pool, media_id: str) -> dict[str, Any]:
    row = await db.fetchrow("SELECT * FROM media WHERE id = $1", int(media_id))
    assert row is not None
    return dict(row)


async def fetch(url: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.get(url, headers=headers)


# ---------------------------------------------------------------- stories


async def test_a_user_sets_a_photo_as_avatar_stripped_of_gps_and_everyone_sees_it(
    any_api: Api, make_api: Any, register: Any, server: Server, db: asyncpg.Pool
) -> None:
    alice = await register(any_api)
    photo = samples.jpeg_with_gps(640, 480)
    assert Image.open(io.BytesIO(photo)).getexif().get_ifd(GPS_IFD)  # the upload does carry a position

    media = await upload(any_api, "avatar", "image/jpeg", photo, name="me.jpg")
    assert media["kind"] == "image" and media["content_type"] == "image/jpeg" and media["state"] == "ready"
    assert (media["width"], media["height"]) == (480, 640)  # turned upright by its EXIF orientation
    assert isinstance(media["blurhash"], str) and len(media["blurhash"]) >= 6 and media["name"] == "me.jpg"
    assert "signature=" in media["url"]  # not public yet: a signed, expiring URL

    stored = await fetch(media["url"])
    assert stored.status_code == 200 and stored.headers["content-type"] == "image/jpeg"
    assert len(stored.content) == media["size"]
    cleaned = Image.open(io.BytesIO(stored.content))
    assert not cleaned.getexif().get_ifd(GPS_IFD) and not cleaned.getexif()  # no GPS, no EXIF at all
    assert (
        stored.headers["x-content-type-options"] == "nosniff" and "sandbox" in stored.headers["content-security-policy"]
    )
    thumb = await fetch(media["thumbnail_url"])
    assert thumb.status_code == 200 and max(Image.open(io.BytesIO(thumb.content)).size) <= 320

    stable = media["url"].split("?")[0]
    assert (await fetch(stable)).status_code == 404  # nobody else may see it before it is used publicly
    assert (await fetch(stable, any_api.token)).status_code == 200  # its owner may

    me = await any_api.put("/api/v1/me/avatar", {"media_id": media["id"]})
    assert me.status == 200 and me.body["avatar"] == stable
    anonymous = make_api()
    profile = await anonymous.get(f"/api/v1/users/{alice['username']}")
    assert profile.body["avatar"] == stable
    public = await fetch(stable)
    assert public.status_code == 200 and public.content == stored.content
    assert "public" in public.headers["cache-control"]
    assert (await any_api.get("/api/v1/me")).body["avatar"] == stable

    cleared = await any_api.delete("/api/v1/me/avatar")
    assert cleared.status == 200 and cleared.body["avatar"] is None
    assert (await anonymous.get(f"/api/v1/users/{alice['username']}")).body["avatar"] is None
    assert media_files(server, media["id"]) == [f"{media['id']}", f"{media['id']}.thumb.jpg"]


@pytest.mark.parametrize(("ctype", "kind", "make"), samples.EVERY_TYPE, ids=[t[0] for t in samples.EVERY_TYPE])
async def test_every_kind_uploads_for_chat_and_downloads_byte_for_byte(
    api: Api, register: Any, server: Server, ctype: str, kind: str, make: Any
) -> None:
    await register(api)
    data = make()
    media = await upload(api, "chat", ctype, data, name=f"sample.{kind}")
    assert media["kind"] == kind and media["content_type"] == ctype
    got = await fetch(media["url"])
    assert got.status_code == 200 and got.headers["content-type"].split(";")[0] == ctype
    if kind == "image":
        assert media["width"] > 0 and media["height"] > 0 and "blurhash" in media and "thumbnail_url" in media
        assert Image.open(io.BytesIO(got.content)).format == Image.open(io.BytesIO(data)).format
    else:
        assert got.content == data and media["size"] == len(data)
        assert "thumbnail_url" not in media
    if ctype == "video/mp4":
        assert media["duration_ms"] == 2500  # from moov/mvhd, found after the mdat
    if kind == "file":
        assert got.headers["content-disposition"].startswith("attachment;")
    assert not [n for n in media_files(server, media["id"]) if n.endswith((".part", ".upload"))]


async def test_a_large_upload_streams_through_and_a_video_gets_its_duration(api: Api, register: Any) -> None:
    await register(api)
    data = samples.mp4(duration_ms=61_000, padding=30 * 1024 * 1024)  # 30 MB, more than the JSON body limit
    media = await upload(api, "post", "video/mp4", data)
    assert media["size"] == len(data) and media["duration_ms"] == 61_000
    got = await fetch(media["url"])
    assert got.status_code == 200 and len(got.content) == len(data) and got.content[-200:] == data[-200:]


# ---------------------------------------------------------------- bad declarations


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (
            {"purpose": "chat", "content_type": "application/x-msdownload", "size": 10},
            422,
            "unsupported_content_type",
            "content_type",
        ),
        (
            {"purpose": "avatar", "content_type": "video/mp4", "size": 10},
            422,
            "unsupported_content_type",
            "content_type",
        ),
        (
            {"purpose": "post", "content_type": "audio/mpeg", "size": 10},
            422,
            "unsupported_content_type",
            "content_type",
        ),
        (
            {"purpose": "post", "content_type": "image/png", "size": 20 * 1024 * 1024 + 1},
            413,
            "payload_too_large",
            None,
        ),
        (
            {"purpose": "chat", "content_type": "video/mp4", "size": 200 * 1024 * 1024 + 1},
            422,
            "validation_failed",  # past the largest limit of any kind: the schema says so
            "size",
        ),
        (
            {"purpose": "chat", "content_type": "audio/ogg", "size": 50 * 1024 * 1024 + 1},
            413,
            "payload_too_large",
            None,
        ),
        (
            {"purpose": "chat", "content_type": "application/pdf", "size": 100 * 1024 * 1024 + 1},
            413,
            "payload_too_large",
            None,
        ),
        ({"purpose": "story", "content_type": "image/png", "size": 10}, 422, "validation_failed", "purpose"),
        ({"purpose": "post", "content_type": "image/png", "size": 0}, 422, "validation_failed", "size"),
        (
            {"purpose": "post", "content_type": "image/png", "size": 10, "owner_id": "1"},
            422,
            "validation_failed",
            "owner_id",
        ),
        (
            {"purpose": "chat", "content_type": "text/plain", "size": 10, "name": "../../etc/passwd"},
            422,
            "validation_failed",
            "name",
        ),
    ],
)
async def test_a_bad_declaration_is_refused_and_nothing_is_stored(
    api: Api, register: Any, db: asyncpg.Pool, body: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    me = await register(api)
    reply = await api.post(MEDIA, body)
    err = assert_error(reply, status, code)
    if field is not None:
        assert field in err["details"]["fields"], err
    assert await db.fetchval("SELECT count(*) FROM media WHERE owner_id = $1", int(me["user"]["id"])) == 0


async def test_declaring_an_upload_needs_a_token(api: Api) -> None:
    assert_error(await declare(api, "post", "image/png", 10), 401, "unauthenticated")


# ---------------------------------------------------------------- bad uploads and completes


async def test_png_bytes_declared_as_video_are_refused_on_complete_and_dropped(
    api: Api, register: Any, server: Server, db: asyncpg.Pool
) -> None:
    await register(api)
    data = samples.png()
    made = await declare(api, "post", "video/mp4", len(data))
    assert (await send(made.body["upload"], data)).status_code == 204
    err = assert_error(await api.post(f"{MEDIA}/{made.body['media_id']}/complete"), 422, "content_type_mismatch")
    assert err["details"] == {"declared": "video/mp4", "detected": "png"}
    assert (await row_of(db, made.body["media_id"]))["state"] == "pending"
    assert media_files(server, made.body["media_id"]) == []


async def test_bytes_that_only_look_like_an_image_are_refused(api: Api, register: Any, server: Server) -> None:
    await register(api)
    data = samples.png()[:40] + b"\x00" * 400  # a PNG signature and header, then garbage
    made = await declare(api, "post", "image/png", len(data))
    assert (await send(made.body["upload"], data)).status_code == 204
    assert_error(await api.post(f"{MEDIA}/{made.body['media_id']}/complete"), 422, "invalid_image")
    assert media_files(server, made.body["media_id"]) == []


async def test_an_upload_larger_than_declared_is_cut_off_while_streaming_and_nothing_is_kept(
    api: Api, register: Any, server: Server, db: asyncpg.Pool
) -> None:
    await register(api)
    declared = 100 * 1024
    made = await declare(api, "chat", "application/octet-stream", declared)
    upload_ = made.body["upload"]
    # Chunked, so no Content-Length gives it away up front: the server must count while it streams.
    url = urlsplit(upload_["url"])
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(
        f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/octet-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
    )
    chunk = b"x" * 65536
    for _ in range(10):  # 640 KB
        writer.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    writer.write(b"0\r\n\r\n")
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status_line.split()[1] == b"413", status_line
    await asyncio.sleep(0.2)
    assert media_files(server, made.body["media_id"]) == []
    assert_error(await api.post(f"{MEDIA}/{made.body['media_id']}/complete"), 422, "upload_missing")

    # A Content-Length over the declared size is refused before a byte is read.
    too_long = await send(upload_, b"y" * (declared + 1))
    assert too_long.status_code == 413 and too_long.json()["error"]["code"] == "payload_too_large"
    assert media_files(server, made.body["media_id"]) == []


async def test_a_short_upload_is_refused_on_complete(api: Api, register: Any, server: Server) -> None:
    await register(api)
    made = await declare(api, "chat", "application/pdf", 1000)
    assert (await send(made.body["upload"], samples.pdf())).status_code == 204
    err = assert_error(await api.post(f"{MEDIA}/{made.body['media_id']}/complete"), 422, "size_mismatch")
    assert err["details"] == {"declared": 1000, "received": len(samples.pdf())}
    assert media_files(server, made.body["media_id"]) == []


async def test_complete_before_upload_twice_and_upload_after(api: Api, register: Any, db: asyncpg.Pool) -> None:
    await register(api)
    data = samples.pdf()
    made = await declare(api, "chat", "application/pdf", len(data))
    media_id = made.body["media_id"]
    assert_error(await api.post(f"{MEDIA}/{media_id}/complete"), 422, "upload_missing")
    assert (await send(made.body["upload"], data)).status_code == 204
    first = await api.post(f"{MEDIA}/{media_id}/complete")
    assert first.status == 200
    assert_error(await api.post(f"{MEDIA}/{media_id}/complete"), 409, "already_completed")
    late = await send(made.body["upload"], b"%PDF-" + b"z" * (len(data) - 5))
    assert late.status_code == 409 and late.json()["error"]["code"] == "already_completed"
    assert (await fetch(first.body["url"])).content == data  # what was checked is what is served


async def test_a_wrong_content_type_on_the_upload_is_415(api: Api, register: Any) -> None:
    await register(api)
    made = await declare(api, "post", "image/png", 100)
    sent = await send(made.body["upload"], b"x" * 100, **{"Content-Type": "text/html"})
    assert sent.status_code == 415 and sent.json()["error"]["code"] == "unsupported_media_type"


async def test_expired_and_tampered_upload_urls_are_403(
    api: Api, register: Any, server: Server, db: asyncpg.Pool
) -> None:
    await register(api)
    made = await declare(api, "post", "image/png", 100)
    media_id = int(made.body["media_id"])
    url = urlsplit(made.body["upload"]["url"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    base = f"{url.scheme}://{url.netloc}{url.path}"
    headers = {"Content-Type": "image/png"}
    signer = UrlSigner(derive_key(TEST_JWT_SECRET, MEDIA_URL))
    past = int(time.time()) - 10
    cases = {
        "url_expired": {"expires": str(past), "signature": signer.sign("PUT", media_id, "upload", past)},
        "url_invalid": {**query, "signature": ("0" if query["signature"][0] != "0" else "1") + query["signature"][1:]},
        "url_missing": {"expires": query["expires"]},
    }
    longer = {**query, "expires": str(int(query["expires"]) + 86400)}  # a later expiry under the old signature
    async with httpx.AsyncClient(timeout=10) as http:
        for reason, params in cases.items():
            reply = await http.put(base, params=params, content=b"x" * 100, headers=headers)
            assert reply.status_code == 403 and reply.json()["error"]["details"]["reason"] == reason, reply.text
        reply = await http.put(base, params=longer, content=b"x" * 100, headers=headers)
        assert reply.status_code == 403
        other = await declare(api, "post", "image/png", 100)  # this URL's signature on another media id
        reply = await http.put(
            f"{url.scheme}://{url.netloc}{MEDIA}/{other.body['media_id']}/upload",
            params=query,
            content=b"x" * 100,
            headers=headers,
        )
        assert reply.status_code == 403
    assert media_files(server, str(media_id)) == []


async def test_someone_elses_media_cannot_be_completed_attached_or_read(
    make_api: Any, register: Any, db: asyncpg.Pool
) -> None:
    alice, bob = make_api(), make_api()
    await register(alice)
    bob_user = await register(bob)
    private = await upload(alice, "avatar", "image/png", samples.png())
    made = await declare(alice, "avatar", "image/png", len(samples.png()))
    await send(made.body["upload"], samples.png())

    assert_error(await bob.post(f"{MEDIA}/{made.body['media_id']}/complete"), 404, "not_found")
    assert (await row_of(db, made.body["media_id"]))["state"] == "pending"
    err = assert_error(await bob.put("/api/v1/me/avatar", {"media_id": private["id"]}), 422, "invalid_media")
    assert "media_id" in err["details"]["fields"]
    assert (await db.fetchval("SELECT avatar_media_id FROM users WHERE id = $1", int(bob_user["user"]["id"]))) is None
    stable = private["url"].split("?")[0]
    assert (await fetch(stable, bob.token)).status_code == 404  # not public, not Bob's
    assert (await row_of(db, private["id"]))["public"] is False
    assert_error(await bob.put("/api/v1/me/avatar", {"media_id": "999999999999"}), 422, "invalid_media")


async def test_an_avatar_must_be_a_completed_avatar_image(api: Api, register: Any) -> None:
    await register(api)
    pending = await declare(api, "avatar", "image/png", 100)
    assert_error(await api.put("/api/v1/me/avatar", {"media_id": pending.body["media_id"]}), 422, "media_not_ready")
    for_post = await upload(api, "post", "image/png", samples.png())
    assert_error(await api.put("/api/v1/me/avatar", {"media_id": for_post["id"]}), 422, "invalid_media")
    assert_error(await api.put("/api/v1/me/avatar", {"media_id": "abc"}), 422, "validation_failed")
    assert_error(await api.put("/api/v1/me/avatar", {"media_id": for_post["id"], "x": 1}), 422, "validation_failed")
    assert (await api.get("/api/v1/me")).body["avatar"] is None


async def test_unknown_and_pending_media_are_404_to_download(api: Api, register: Any, server: Server) -> None:
    await register(api)
    made = await declare(api, "post", "image/png", 100)
    for path in (f"{MEDIA}/{made.body['media_id']}", f"{MEDIA}/123456789", f"{MEDIA}/123456789/thumbnail"):
        reply = await api.get(path)
        assert_error(reply, 404, "not_found")


async def test_a_client_reset_mid_upload_leaves_nothing_and_the_upload_can_be_retried(
    api: Api, register: Any, server: Server
) -> None:
    import socket
    import struct

    await register(api)
    data = samples.mp4(padding=3 * 1024 * 1024)
    made = await declare(api, "post", "video/mp4", len(data))
    url = urlsplit(made.body["upload"]["url"])
    sock = socket.create_connection((url.hostname, url.port))
    sock.sendall(
        f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: video/mp4\r\n"
        f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data[: 2 * 1024 * 1024]
    )
    await asyncio.sleep(0.3)  # the server is streaming it to a temporary file now
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST, not FIN

    async def gone() -> bool | None:
        return True if media_files(server, made.body["media_id"]) == [] else None

    from tests.support import wait_until

    await wait_until(gone, timeout=10)
    assert_error(await api.post(f"{MEDIA}/{made.body['media_id']}/complete"), 422, "upload_missing")
    assert (await send(made.body["upload"], data)).status_code == 204  # the same URL works again
    done = await api.post(f"{MEDIA}/{made.body['media_id']}/complete")
    assert done.status == 200 and done.body["size"] == len(data)


async def test_a_burst_of_image_completes_is_answered_200_or_503_never_500(api: Api, register: Any) -> None:
    await register(api)
    photo = samples.jpeg_with_gps(1600, 1200)
    made = []
    for _ in range(16):
        declared = await declare(api, "post", "image/jpeg", len(photo))
        assert declared.status == 201, declared.body
        assert (await send(declared.body["upload"], photo)).status_code == 204
        made.append(declared.body["media_id"])
    replies = await asyncio.gather(*(api.post(f"{MEDIA}/{media_id}/complete") for media_id in made))
    statuses = sorted({r.status for r in replies})
    assert set(statuses) <= {200, 503}, statuses
    for reply in replies:
        if reply.status == 503:
            assert reply.headers["retry-after"] and reply.error_code == "unavailable"
    assert 200 in statuses
