"""Google Cloud Storage media backend (``MEDIA_BACKEND=gcs``): objects in ``GCS_BUCKET``, V4 signed URLs.

The client sends the bytes straight to GCS with ``PUT`` on a V4 signed URL that pins the content type and the
exact length (``x-goog-content-length-range: <size>,<size>``, so GCS itself refuses a larger or smaller body),
and downloads on V4 signed ``GET`` URLs. The api only reads the object back to check it (ranged reads; images
whole, at most the image limit) and writes the cleaned image and its thumbnail.

Credentials: signing needs a private key, from the service-account JSON named by ``GCS_CREDENTIALS_FILE`` (or
``GOOGLE_APPLICATION_CREDENTIALS``, or the environment's default credentials when they can sign). With
``STORAGE_EMULATOR_HOST`` set (tests, development) objects go to that emulator and signed URLs point at it.

google-cloud-storage is a blocking client: every call runs in a small thread pool of its own, off the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage as gcs
from google.oauth2 import service_account

from storage.media import UploadTarget

T = TypeVar("T")
THREADS = 8


class GcsBackend:
    name = "gcs"

    def __init__(self, bucket: str, *, emulator_host: str = "", credentials_file: str = "", project: str = "") -> None:
        if not bucket:
            raise ValueError("MEDIA_BACKEND=gcs needs GCS_BUCKET")
        credentials_file = credentials_file or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "")
        self.signer: Any = (
            service_account.Credentials.from_service_account_file(credentials_file)  # type: ignore[no-untyped-call]
            if credentials_file
            else None
        )
        if emulator_host:
            endpoint = emulator_host if "://" in emulator_host else f"http://{emulator_host}"
            self.client = gcs.Client(
                project=project or "i9lyfe",
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options={"api_endpoint": endpoint},
            )
        else:
            self.client = gcs.Client(project=project or None, credentials=self.signer)
            if self.signer is None:
                self.signer = self.client._credentials
        self.bucket = self.client.bucket(bucket)
        self._pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="gcs")

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def _sign(self, key: str, method: str, expires_at: dt.datetime, **extra: Any) -> str:
        url: str = self.bucket.blob(key).generate_signed_url(
            version="v4",
            expiration=expires_at,
            method=method,
            credentials=self.signer,
            **extra,
        )
        return url

    def upload_target(
        self, media_id: int, key: str, content_type: str, size: int, expires_at: dt.datetime
    ) -> UploadTarget:
        headers = {"Content-Type": content_type, "x-goog-content-length-range": f"{size},{size}"}
        url = self._sign(
            key,
            "PUT",
            expires_at,
            content_type=content_type,
            headers={"x-goog-content-length-range": headers["x-goog-content-length-range"]},
        )
        return UploadTarget("PUT", url, headers, expires_at)

    async def stat(self, key: str) -> int | None:
        blob = await self._run(self.bucket.get_blob, key)
        return None if blob is None else int(blob.size)

    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            data: bytes = await self._run(
                self.bucket.blob(key).download_as_bytes, start=offset, end=offset + length - 1, checksum=None
            )
        except gexc.RequestRangeNotSatisfiable:
            return b""
        return data

    async def read_all(self, key: str) -> bytes:
        data: bytes = await self._run(self.bucket.blob(key).download_as_bytes, checksum=None)
        return data

    async def write(self, key: str, data: bytes, content_type: str) -> None:
        await self._run(self.bucket.blob(key).upload_from_string, data, content_type=content_type)

    async def delete(self, key: str) -> None:
        try:
            await self._run(self.bucket.blob(key).delete)
        except gexc.NotFound:
            return

    async def promote(self, src: str, dst: str) -> None:
        await self._run(self.bucket.copy_blob, self.bucket.blob(src), self.bucket, dst)
        await self.delete(src)

    def signed_download_url(self, key: str, content_type: str, disposition: str, expires_at: dt.datetime) -> str | None:
        return self._sign(key, "GET", expires_at, response_type=content_type, response_disposition=disposition)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
