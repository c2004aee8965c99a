"""Local-disk media backend: objects are files under ``root`` (``MEDIA_DIR``, default ``var/media``).

Object keys are ``media/<digits>[.thumb.jpg|.upload]`` and nothing else (``_path`` refuses any other key, so no key can
climb out of ``root``). Uploads are streamed to a temporary file next to their target, never held whole in
memory, and renamed into place only when complete: a reader never sees half a file, and an upload cut short or
too large leaves nothing behind. File I/O runs in threads, off the event loop, a megabyte at a time.

URLs: the api serves both directions itself. ``upload_target`` is ``PUT <base>/api/v1/media/<id>/upload`` with
``expires`` and ``signature`` (HMAC-SHA256 over method, id, variant and expiry, ``domain/signing.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import secrets
from pathlib import Path

from domain.signing import UrlSigner
from storage.media import UploadTarget

_KEY = re.compile(r"^media/[0-9]{1,20}(\.thumb\.jpg|\.upload)?$")
FLUSH_BYTES = 1024 * 1024


class LocalBackend:
    name = "local"

    def __init__(self, root: str | Path, base_url: str, signer: UrlSigner) -> None:
        self.root = Path(root).resolve()
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        (self.root / "media").mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a media object key: {key!r}")
        return self.root / key

    def upload_target(
        self, media_id: int, key: str, content_type: str, size: int, expires_at: dt.datetime
    ) -> UploadTarget:
        expires = int(expires_at.timestamp())
        signature = self.signer.sign("PUT", media_id, "upload", expires)
        url = f"{self.base_url}/api/v1/media/{media_id}/upload?expires={expires}&signature={signature}"
        return UploadTarget("PUT", url, {"Content-Type": content_type}, expires_at)

    def open_upload(self, key: str) -> Upload:
        return Upload(self._path(key))

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    async def stat(self, key: str) -> int | None:
        path = self._path(key)
        try:
            return (await asyncio.to_thread(path.stat)).st_size
        except FileNotFoundError:
            return None

    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        def read() -> bytes:
            with self._path(key).open("rb") as fh:
                fh.seek(offset)
                return fh.read(length)

        return await asyncio.to_thread(read)

    async def read_all(self, key: str) -> bytes:
        return await asyncio.to_thread(self._path(key).read_bytes)

    async def write(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)

        def write() -> None:
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
            try:
                tmp.write_bytes(data)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)

        await asyncio.to_thread(write)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def promote(self, src: str, dst: str) -> None:
        await asyncio.to_thread(os.replace, self._path(src), self._path(dst))

    def signed_download_url(self, key: str, content_type: str, disposition: str, expires_at: dt.datetime) -> str | None:
        return None

    def close(self) -> None:
        return None


class Upload:
    """One upload in progress: ``write`` chunks, then ``commit`` (rename into place) or ``abort`` (delete)."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
        self.size = 0
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._fh: int | None = None

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= FLUSH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0

        def write() -> None:
            if self._fh is None:
                self._fh = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            view = memoryview(data)
            while view:
                view = view[os.write(self._fh, view) :]

        await asyncio.to_thread(write)

    async def commit(self) -> None:
        await self._flush()

        def finish() -> None:
            assert self._fh is not None
            os.fsync(self._fh)
            os.close(self._fh)
            self._fh = None
            os.replace(self.tmp, self.target)

        await asyncio.to_thread(finish)

    async def abort(self) -> None:
        def drop() -> None:
            if self._fh is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fh)
                self._fh = None
            self.tmp.unlink(missing_ok=True)

        self._buffer.clear()
        await asyncio.to_thread(drop)
