"""What an uploaded object really is: magic bytes against the declared type, images decoded and cleaned.

Pure and blocking (no I/O of ours, no event loop): ``api/uploads.py`` runs ``process_image`` in its bounded
thread pool. Images are decoded with Pillow under a pixel cap (a decompression bomb is refused, not decoded),
turned upright by their EXIF orientation and re-encoded without any metadata (EXIF, GPS, XMP, comments; the ICC
colour profile is kept), measured, given a blurhash (4x3 components) and a thumbnail of at most 320 px (JPEG).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from domain import blurhash

HEAD_BYTES = 64
MAX_PIXELS = 40_000_000  # 40 MP: a phone camera's largest photo, far under what would exhaust memory
THUMB_PX = 320
JPEG_QUALITY = 90

# The declared content type's family, as recognised from its first bytes.
_FAMILY_OF_TYPE = {
    "image/jpeg": "jpeg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "video/mp4": "isobmff",
    "video/quicktime": "isobmff",
    "audio/mp4": "isobmff",
    "video/webm": "ebml",
    "audio/webm": "ebml",
    "audio/ogg": "ogg",
    "audio/mpeg": "mp3",
    "audio/aac": "adts",
    "audio/wav": "wav",
    "application/pdf": "pdf",
    "application/zip": "zip",
}
PILLOW_FORMAT = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP"}


def sniff(head: bytes) -> str | None:
    """The container family of these first bytes, or None when nothing known matches."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[4:8] == b"ftyp":
        return "isobmff"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "ebml"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE6 == 0xE2):
        return "mp3"  # an ID3 tag, or an MPEG audio frame sync (layer III)
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "adts"
    return None


def matches(content_type: str, head: bytes) -> bool:
    """Whether the first bytes fit the declared type: binary types by magic bytes; text as UTF-8 without NUL;
    ``application/octet-stream`` anything."""
    if content_type == "application/octet-stream":
        return True
    if content_type in ("text/plain", "text/csv"):
        return is_text(head)
    family = _FAMILY_OF_TYPE.get(content_type)
    return family is not None and sniff(head) == family


def is_text(sample: bytes) -> bool:
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still text.
        return exc.start >= len(sample) - 3 and exc.reason == "unexpected end of data"
    return True


class BadImage(ValueError):
    """The bytes are not a decodable image of the declared type (the message says why)."""


@dataclass(frozen=True)
class CleanImage:
    data: bytes  # the stored original: upright, no metadata
    content_type: str
    width: int
    height: int
    blurhash: str
    thumbnail: bytes  # JPEG, at most THUMB_PX on its longer side


def process_image(data: bytes, content_type: str) -> CleanImage:
    """Decode, check, turn upright, re-encode without metadata, measure, thumbnail and blurhash one image.

    Memory: the decoded image exists once (turned upright in place); the thumbnail is shrunk in place from it
    after the original is encoded, and the blurhash comes from the thumbnail. About 3-4 bytes per pixel at the
    peak, plus the encoded output (a 12 MP photo: ~50 MB)."""
    expected = PILLOW_FORMAT[content_type]
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, EOFError) as exc:
        raise BadImage(f"the image cannot be decoded ({exc.__class__.__name__})") from exc
    try:
        if image.format != expected:
            raise BadImage(f"the bytes are {image.format}, not {expected}")
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise BadImage(f"{width}x{height} is more than {MAX_PIXELS} pixels")
        try:
            frames = getattr(image, "n_frames", 1)
            icc = image.info.get("icc_profile")
            if frames > 1:
                cleaned = _reencode_animation(image, expected)
                image.seek(0)
                image.load()
            else:
                ImageOps.exif_transpose(image, in_place=True)
                cleaned = _reencode(image, expected, icc)
            width, height = image.size
            image.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)  # in place: the full size goes
            thumb = image.convert("RGB")  # a small copy that outlives the decoded image
        except (Image.DecompressionBombError, OSError, SyntaxError, EOFError, ValueError) as exc:
            raise BadImage(f"the image cannot be decoded ({exc.__class__.__name__})") from exc
    finally:
        image.close()
    small = thumb.copy()
    small.thumbnail((32, 32))
    hash_ = blurhash.encode(small, x_components=4, y_components=3)
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=80, optimize=True)
    return CleanImage(cleaned, content_type, width, height, hash_, out.getvalue())


def _reencode(image: Image.Image, fmt: str, icc: bytes | None) -> bytes:
    out = io.BytesIO()
    extra: dict[str, object] = {"icc_profile": icc} if icc else {}
    if fmt == "JPEG":
        image = image.convert("RGB") if image.mode not in ("RGB", "L", "CMYK") else image
        image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True, **extra)
    elif fmt == "PNG":
        image.save(out, "PNG", optimize=False, **extra)  # no text chunks, no eXIf: nothing of the input's metadata
    elif fmt == "WEBP":
        image.save(out, "WEBP", quality=JPEG_QUALITY, **extra)
    else:
        image.save(out, fmt)
    return out.getvalue()


def _reencode_animation(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    keep = {k: image.info[k] for k in ("duration", "loop") if k in image.info}
    image.save(out, fmt, save_all=True, **keep)
    return out.getvalue()


ReadAt = Callable[[int, int], Awaitable[bytes]]


async def mp4_duration_ms(read_at: ReadAt, size: int) -> int | None:
    """The duration of an MP4/QuickTime file from its ``moov/mvhd`` box, walking box headers with ranged reads
    (a dozen small reads at most, wherever the moov box sits); None when it cannot be found."""
    offset = 0
    for _ in range(64):
        if offset + 8 > size:
            return None
        box_size, box_type, header = await _box(read_at, offset, size)
        if box_size is None:
            return None
        if box_type == b"moov":
            end = offset + box_size
            inner = offset + header
            for _ in range(64):
                if inner + 8 > end:
                    return None
                child_size, child_type, child_header = await _box(read_at, inner, end)
                if child_size is None:
                    return None
                if child_type == b"mvhd":
                    body = await read_at(inner + child_header, 32)
                    return _mvhd_ms(body)
                inner += child_size
            return None
        offset += box_size
    return None


async def _box(read_at: ReadAt, offset: int, limit: int) -> tuple[int | None, bytes, int]:
    head = await read_at(offset, 16)
    if len(head) < 8:
        return None, b"", 0
    box_size, box_type = struct.unpack(">I4s", head[:8])
    header = 8
    if box_size == 1 and len(head) >= 16:
        box_size = struct.unpack(">Q", head[8:16])[0]
        header = 16
    elif box_size == 0:
        box_size = limit - offset
    if box_size < header or offset + box_size > limit:
        return None, b"", 0
    return box_size, box_type, header


def _mvhd_ms(body: bytes) -> int | None:
    if len(body) < 20:
        return None
    version = body[0]
    if version == 1:
        if len(body) < 32:
            return None
        timescale, duration = struct.unpack(">IQ", body[20:32])
    else:
        timescale, duration = struct.unpack(">II", body[12:20])
    if timescale == 0:
        return None
    return int(duration * 1000 // timescale)
