"""Media with ``MEDIA_BACKEND=gcs`` against a GCS emulator the test starts (PyPI gcp-storage-emulator, in memory):
the client uploads straight to the bucket on a V4 signed URL, the api checks the object through the client library
(ranged reads, whole reads for images, writes of the cleaned image and thumbnail, copy to the final key), and
downloads redirect to a V4 signed GET URL.

The emulator does not verify signatures, so the signing is checked here on its own: every signed URL is verified
against the service account's public key with the V4 algorithm (canonical request, string to sign, RSA-SHA256),
and a URL whose method, content type, length range or expiry is changed no longer verifies.

The server gets its own database, Redis prefix and Ray namespace (its media settings are part of the shard
fingerprint, so it must not share the session server's shards)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from PIL import Image

from actors.runtime.cluster import RayHead, free_port
from tests import media_samples as samples
from tests.conftest import Server, own_server
from tests.support import Api, Mailbox, assert_error

BUCKET = "i9media-test"
MEDIA = "/api/v1/media"


@pytest.fixture(scope="module")
def signing_key(workdir: Path) -> tuple[Path, RSAPublicKey]:
    """A service-account JSON with a fresh RSA key, as GCS_CREDENTIALS_FILE, and its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    info = {
        "type": "service_account",
        "project_id": "i9lyfe-test",
        "private_key_id": "test-key-1",
        "private_key": pem.decode(),
        "client_email": "media-signer@i9lyfe-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",  # never called: signing is local
    }
    path = workdir / "gcs-service-account.json"
    path.write_text(json.dumps(info))
    path.chmod(0o600)
    return path, key.public_key()


@pytest.fixture(scope="module")
def emulator(workdir: Path) -> Iterator[str]:
    port = free_port()
    log = (workdir / "gcs-emulator.log").open("wb")
    exe = Path(sys.executable).with_name("gcp-storage-emulator")
    process = subprocess.Popen(
        [str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "--default-bucket", BUCKET],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(base + "/", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"GCS emulator did not start:\n{(workdir / 'gcs-emulator.log').read_text()[-2000:]}")
        time.sleep(0.1)
    yield base
    process.terminate()
    process.wait(timeout=10)
    log.close()


@pytest.fixture(scope="module")
def gcs_server(
    redis_prefix: str,
    ray_head: RayHead,
    mailbox: Mailbox,
    run_id: str,
    workdir: Path,
    emulator: str,
    signing_key: tuple[Path, RSAPublicKey],
) -> Iterator[Server]:
    with own_server(
        "gcs",
        redis_prefix,
        ray_head,
        mailbox,
        run_id,
        workdir,
        WORKERS="1",
        USER_SHARDS="2",
        MEDIA_BACKEND="gcs",
        GCS_BUCKET=BUCKET,
        STORAGE_EMULATOR_HOST=emulator,
        GCS_CREDENTIALS_FILE=str(signing_key[0]),
    ) as made:
        yield made


@pytest.fixture
async def gapi(gcs_server: Server) -> Any:
    client = Api(gcs_server.base_url)
    yield client
    await client.close()


def verify_v4(url: str, method: str, headers: dict[str, str], public_key: RSAPublicKey) -> dict[str, str]:
    """Check a GOOG4-RSA-SHA256 signed URL as GCS does; returns its query. Raises InvalidSignature if it fails."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    signature = bytes.fromhex(query.pop("X-Goog-Signature"))
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))
    all_headers = {"host": parts.netloc, **{k.lower(): v.strip() for k, v in headers.items()}}
    signed = query["X-Goog-SignedHeaders"].split(";")
    canonical_headers = "".join(f"{name}:{all_headers[name]}\n" for name in signed)
    canonical = "\n".join(
        [method, parts.path, canonical_query, canonical_headers, query["X-Goog-SignedHeaders"], "UNSIGNED-PAYLOAD"]
    )
    scope = query["X-Goog-Credential"].split("/", 1)[1]
    to_sign = "\n".join(
        ["GOOG4-RSA-SHA256", query["X-Goog-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    public_key.verify(signature, to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())
    return query


async def test_a_photo_goes_to_the_bucket_on_a_signed_url_and_comes_back_cleaned(
    gapi: Api, register: Any, emulator: str, signing_key: tuple[Path, RSAPublicKey]
) -> None:
    alice = await register(gapi)
    photo = samples.jpeg_with_gps(800, 600)
    made = await gapi.post(MEDIA, {"purpose": "avatar", "content_type": "image/jpeg", "size": len(photo)})
    assert made.status == 201, made.body
    upload = made.body["upload"]
    assert upload["url"].startswith(f"{emulator}/{BUCKET}/media/{made.body['media_id']}.upload?")
    assert upload["headers"] == {
        "Content-Type": "image/jpeg",
        "x-goog-content-length-range": f"{len(photo)},{len(photo)}",
    }
    query = verify_v4(upload["url"], "PUT", upload["headers"], signing_key[1])
    assert set(query["X-Goog-SignedHeaders"].split(";")) == {"content-type", "host", "x-goog-content-length-range"}
    assert 3500 <= int(query["X-Goog-Expires"]) <= 3600

    async with httpx.AsyncClient(timeout=30) as http:
        sent = await http.put(upload["url"], content=photo, headers=upload["headers"])
        assert sent.status_code == 200, sent.text
        done = await gapi.post(f"{MEDIA}/{made.body['media_id']}/complete")
        assert done.status == 200, done.body
        media = done.body
        assert (media["width"], media["height"]) == (600, 800) and media["blurhash"]

        # Downloads redirect to a signed GET of the cleaned object (no EXIF, no GPS), re-used across reads.
        first = await http.get(media["url"])
        assert first.status_code == 302
        location = first.headers["location"]
        assert location.startswith(f"{emulator}/{BUCKET}/media/{media['id']}?")
        verify_v4(location, "GET", {}, signing_key[1])
        again = await http.get(media["url"])
        assert again.headers["location"] == location  # signed once, not per read
        stored = await http.get(location)
        assert stored.status_code == 200 and len(stored.content) == media["size"]
        assert not Image.open(io.BytesIO(stored.content)).getexif()
        thumb = await http.get(media["thumbnail_url"], follow_redirects=True)
        assert thumb.status_code == 200 and max(Image.open(io.BytesIO(thumb.content)).size) <= 320
        # The upload object is gone once completed: only the checked original and its thumbnail stay.
        listing = (
            await http.get(f"{emulator}/storage/v1/b/{BUCKET}/o", params={"prefix": f"media/{media['id']}"})
        ).json()
        assert sorted(item["name"] for item in listing.get("items", [])) == [
            f"media/{media['id']}",
            f"media/{media['id']}.thumb.jpg",
        ]

    me = await gapi.put("/api/v1/me/avatar", {"media_id": media["id"]})
    assert me.status == 200 and me.body["avatar"] == media["url"].split("?")[0]
    anonymous = Api(str(gapi.http.base_url))
    profile = await anonymous.get(f"/api/v1/users/{alice['username']}")
    await anonymous.close()
    assert profile.body["avatar"] == me.body["avatar"]


@pytest.mark.parametrize(("ctype", "kind", "make"), [t for t in samples.EVERY_TYPE if t[1] != "image"])
async def test_every_other_kind_goes_through_the_bucket(
    gapi: Api, register: Any, ctype: str, kind: str, make: Any
) -> None:
    await register(gapi)
    data = make()
    made = await gapi.post(MEDIA, {"purpose": "chat", "content_type": ctype, "size": len(data)})
    async with httpx.AsyncClient(timeout=30) as http:
        sent = await http.put(made.body["upload"]["url"], content=data, headers=made.body["upload"]["headers"])
        assert sent.status_code == 200
        done = await gapi.post(f"{MEDIA}/{made.body['media_id']}/complete")
        assert done.status == 200 and done.body["kind"] == kind, done.body
        if ctype == "video/mp4":
            assert done.body["duration_ms"] == 2500  # moov found by ranged reads through the client library
        got = await http.get(done.body["url"], follow_redirects=True)
        assert got.status_code == 200 and got.content == data


async def test_lying_short_and_foreign_uploads_are_refused_through_the_bucket(
    gapi: Api, register: Any, gcs_server: Server, emulator: str, signing_key: tuple[Path, RSAPublicKey]
) -> None:
    await register(gapi)
    bob = Api(gcs_server.base_url)
    await register(bob)
    png = samples.png()
    async with httpx.AsyncClient(timeout=30) as http:
        made = await gapi.post(MEDIA, {"purpose": "post", "content_type": "video/mp4", "size": len(png)})
        await http.put(made.body["upload"]["url"], content=png, headers=made.body["upload"]["headers"])
        assert_error(await bob.post(f"{MEDIA}/{made.body['media_id']}/complete"), 404, "not_found")
        assert_error(await gapi.post(f"{MEDIA}/{made.body['media_id']}/complete"), 422, "content_type_mismatch")
        gone = await http.get(f"{emulator}/storage/v1/b/{BUCKET}/o/media%2F{made.body['media_id']}.upload")
        assert gone.status_code == 404  # the lying object is deleted
        assert_error(await gapi.post(f"{MEDIA}/{made.body['media_id']}/complete"), 422, "upload_missing")

        short = await gapi.post(MEDIA, {"purpose": "chat", "content_type": "application/pdf", "size": 5000})
        await http.put(short.body["upload"]["url"], content=samples.pdf(), headers=short.body["upload"]["headers"])
        assert_error(await gapi.post(f"{MEDIA}/{short.body['media_id']}/complete"), 422, "size_mismatch")
        # The local-backend upload route is not a way around the bucket.
        assert_error(await gapi.put(f"{MEDIA}/{short.body['media_id']}/upload", raw=b"x"), 404, "not_found")
    await bob.close()


def test_a_changed_method_type_length_or_expiry_no_longer_verifies(signing_key: tuple[Path, RSAPublicKey]) -> None:
    from cryptography.exceptions import InvalidSignature

    from storage.media.gcs import GcsBackend

    backend = GcsBackend(BUCKET, emulator_host="http://127.0.0.1:1", credentials_file=str(signing_key[0]))
    try:
        import datetime as dt

        target = backend.upload_target(
            7, "media/7.upload", "image/png", 1234, dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        )
        verify_v4(target.url, "PUT", target.headers, signing_key[1])
        for method, headers, url in [
            ("GET", target.headers, target.url),
            ("PUT", {**target.headers, "Content-Type": "text/html"}, target.url),
            ("PUT", {**target.headers, "x-goog-content-length-range": "0,999999999"}, target.url),
            ("PUT", target.headers, target.url.replace("X-Goog-Expires=3", "X-Goog-Expires=9")),
            ("PUT", target.headers, target.url.replace("media/7.upload", "media/8.upload")),
        ]:
            with pytest.raises(InvalidSignature):
                verify_v4(url, method, headers, signing_key[1])
    finally:
        backend.close()
