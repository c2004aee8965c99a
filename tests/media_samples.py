"""Small, real files of every uploadable kind, made in memory (Pillow for images; container headers by hand)."""

from __future__ import annotations

import io
import struct

from PIL import Image

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def jpeg_with_gps(width: int = 640, height: int = 480) -> bytes:
    """A JPEG carrying EXIF with a GPS position and an orientation tag (6: rotate 90 degrees)."""
    image = Image.new("RGB", (width, height), (180, 40, 40))
    for x in range(0, width, 8):
        image.putpixel((x, height // 2), (0, 0, 255))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[0x010F] = "TestCam"  # Make
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)})
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes(), quality=90)
    return out.getvalue()


def png(width: int = 300, height: int = 200) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), (10, 200, 30, 255)).save(out, "PNG")
    return out.getvalue()


def gif_animated() -> bytes:
    frames = [Image.new("RGB", (40, 30), (i * 80, 20, 20)) for i in range(3)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


def webp() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (120, 90), (20, 20, 200)).save(out, "WEBP")
    return out.getvalue()


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def mp4(duration_ms: int = 2500, padding: int = 4096) -> bytes:
    """ftyp, a free box, an mdat of ``padding`` bytes, then moov/mvhd at the end (as many encoders write it)."""
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2mp41")
    mvhd = _box(b"mvhd", bytes(4) + struct.pack(">III", 0, 0, 1000) + struct.pack(">I", duration_ms) + bytes(80))
    return ftyp + _box(b"mdat", bytes(padding)) + _box(b"moov", mvhd)


def webm() -> bytes:
    return b"\x1a\x45\xdf\xa3" + bytes(60) + b"webm-cluster" * 10


def mp3() -> bytes:
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(400)


def ogg() -> bytes:
    return b"OggS\x00\x02" + bytes(200)


def wav() -> bytes:
    return b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + bytes(200)


def pdf() -> bytes:
    return b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"


def zip_file() -> bytes:
    return b"PK\x03\x04" + bytes(100)


def text() -> bytes:
    return "Grocery list: 🍎 apples, bread\n".encode() * 20


# (content type, kind, bytes) of one of each uploadable type, for the chat purpose (which takes every kind).
EVERY_TYPE = [
    ("image/jpeg", "image", jpeg_with_gps),
    ("image/png", "image", png),
    ("image/gif", "image", gif_animated),
    ("image/webp", "image", webp),
    ("video/mp4", "video", mp4),
    ("video/webm", "video", webm),
    ("audio/mpeg", "audio", mp3),
    ("audio/ogg", "audio", ogg),
    ("audio/wav", "audio", wav),
    ("application/pdf", "file", pdf),
    ("application/zip", "file", zip_file),
    ("text/plain", "file", text),
]
