"""What an upload really is: magic bytes per declared type, text detection, MP4 duration from box headers by
ranged reads, image decoding limits, and the upload rules (kinds per purpose, sizes per kind, names)."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from domain import media_inspect as inspect
from domain import media_rules as rules
from domain.errors import PayloadTooLarge, ValidationFailed
from tests import media_samples as samples


@pytest.mark.parametrize(("ctype", "kind", "make"), samples.EVERY_TYPE, ids=[t[0] for t in samples.EVERY_TYPE])
def test_every_sample_matches_its_own_type_and_no_binary_other(ctype: str, kind: str, make: object) -> None:
    data = make()  # type: ignore[operator]
    assert inspect.matches(ctype, data[:8192])
    others = {t for t, _, _ in samples.EVERY_TYPE} - {ctype, "text/plain", "application/octet-stream"}
    # Containers shared by several types (ISO BMFF: mp4/quicktime/m4a; EBML: webm video/audio) aside.
    family = {"video/mp4": {"video/quicktime", "audio/mp4"}, "video/webm": {"audio/webm"}}.get(ctype, set())
    assert not [t for t in others - family if inspect.matches(t, data[:64])]


def test_anything_is_an_octet_stream_but_text_must_be_utf8_without_nul() -> None:
    assert inspect.matches("application/octet-stream", b"\x00\x01\x02")
    assert inspect.matches("text/plain", "naïve café 🍎".encode())
    assert inspect.matches("text/plain", "🍎".encode()[:3])  # a character cut at the end of the sample
    assert not inspect.matches("text/plain", b"abc\x00def")
    assert not inspect.matches("text/csv", b"\xff\xfe\x00a")
    assert not inspect.matches("text/plain", samples.png()[:64])


def test_an_html_page_or_an_executable_is_no_image_video_or_pdf() -> None:
    for head in (b"<!doctype html><script>alert(1)</script>", b"MZ\x90\x00\x03", b"\x7fELF\x02\x01"):
        for ctype in ("image/png", "image/jpeg", "video/mp4", "application/pdf", "audio/mpeg", "application/zip"):
            assert not inspect.matches(ctype, head)
    assert inspect.sniff(b"") is None


def _reader(data: bytes) -> inspect.ReadAt:
    calls: list[tuple[int, int]] = []

    async def read_at(offset: int, length: int) -> bytes:
        calls.append((offset, length))
        return data[offset : offset + length]

    read_at.calls = calls  # type: ignore[attr-defined]
    return read_at


async def test_mp4_duration_is_read_from_mvhd_with_few_small_reads_wherever_moov_is() -> None:
    data = samples.mp4(duration_ms=90_500, padding=5_000_000)  # moov after a 5 MB mdat
    read_at = _reader(data)
    assert await inspect.mp4_duration_ms(read_at, len(data)) == 90_500
    calls = read_at.calls  # type: ignore[attr-defined]
    assert len(calls) <= 6 and all(length <= 32 for _, length in calls)


async def test_mp4_version_1_boxes_and_64_bit_sizes_are_understood() -> None:
    mvhd = b"\x01" + bytes(3) + struct.pack(">QQIQ", 0, 0, 600, 600 * 75)  # version 1: 64-bit duration
    moov = struct.pack(">I4s", 8 + 8 + len(mvhd), b"moov") + struct.pack(">I4s", 8 + len(mvhd), b"mvhd") + mvhd
    ftyp = struct.pack(">I4s", 16, b"ftyp") + b"isom" + bytes(4)
    big_free = struct.pack(">I4sQ", 1, b"free", 16 + 100) + bytes(100)  # size 1: the 64-bit size follows
    data = ftyp + big_free + moov
    assert await inspect.mp4_duration_ms(_reader(data), len(data)) == 75_000


@pytest.mark.parametrize(
    "data",
    [
        b"",
        struct.pack(">I4s", 16, b"ftyp") + b"isom" + bytes(4),  # no moov at all
        struct.pack(">I4s", 4, b"ftyp"),  # a box smaller than its header
        struct.pack(">I4s", 10_000, b"ftyp") + bytes(8),  # a box past the end of the file
        struct.pack(">I4s", 16, b"ftyp") + b"isom" + bytes(4) + struct.pack(">I4s", 8, b"moov"),  # empty moov
    ],
)
async def test_a_truncated_or_hostile_mp4_has_no_duration_and_does_not_loop(data: bytes) -> None:
    assert await inspect.mp4_duration_ms(_reader(data), len(data)) is None


def test_an_image_past_the_pixel_cap_is_refused_before_decoding() -> None:
    out = io.BytesIO()
    Image.new("1", (8_000, 6_000)).save(out, "PNG")  # 48 MP, a few KB compressed
    with pytest.raises(inspect.BadImage, match="pixels"):
        inspect.process_image(out.getvalue(), "image/png")


def test_an_image_of_another_format_than_declared_is_refused() -> None:
    with pytest.raises(inspect.BadImage, match="PNG, not JPEG"):
        inspect.process_image(samples.png(), "image/jpeg")


def test_a_cleaned_jpeg_keeps_its_colour_profile_but_no_metadata() -> None:
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x8825] = {2: (1.0, 2.0, 3.0)}
    Image.new("RGB", (64, 48), (1, 2, 3)).save(out, "JPEG", exif=exif.tobytes(), icc_profile=b"fake-icc" * 10)
    clean = inspect.process_image(out.getvalue(), "image/jpeg")
    reopened = Image.open(io.BytesIO(clean.data))
    assert not reopened.getexif() and reopened.info.get("icc_profile") == b"fake-icc" * 10
    assert (clean.width, clean.height) == (64, 48) and Image.open(io.BytesIO(clean.thumbnail)).format == "JPEG"


@pytest.mark.parametrize(
    ("purpose", "ctype", "size", "error"),
    [
        ("avatar", "image/png", 10, None),
        ("avatar", "video/mp4", 10, ValidationFailed),
        ("comment", "audio/ogg", 10, ValidationFailed),
        ("chat", "audio/ogg", 50 * rules.MB, None),
        ("chat", "audio/ogg", 50 * rules.MB + 1, PayloadTooLarge),
        ("post", "video/mp4", 200 * rules.MB, None),
        ("chat", "application/pdf", 100 * rules.MB + 1, PayloadTooLarge),
        ("chat", "IMAGE/JPG; q=1", 10, None),
        ("chat", "application/x-msdownload", 10, ValidationFailed),
        ("profile", "image/png", 10, ValidationFailed),
    ],
)
def test_upload_rules(purpose: str, ctype: str, size: int, error: type[Exception] | None) -> None:
    if error is None:
        kind, normalized, _ = rules.check_upload(purpose, ctype, size, None)
        assert normalized in rules.KIND_OF and rules.KIND_OF[normalized] == kind
    else:
        with pytest.raises(error):
            rules.check_upload(purpose, ctype, size, None)


@pytest.mark.parametrize("name", ["", "a/b", "a\\\\b", "line\\nbreak", "nul\\x00", "x" * 256])
def test_bad_file_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationFailed):
        rules.check_upload("chat", "text/plain", 10, name.encode().decode("unicode_escape"))


def test_a_plain_name_with_spaces_and_unicode_is_kept_as_given() -> None:
    assert rules.check_upload("chat", "text/plain", 10, "Résumé 2026 (final).txt")[2] == "Résumé 2026 (final).txt"


def test_our_blurhash_equals_the_reference_c_encoder() -> None:
    import random
    import warnings

    import blurhash as reference

    from domain.blurhash import encode

    rng = random.Random(7)
    for n in range(12):
        width, height = rng.randrange(4, 33), rng.randrange(4, 33)
        image = Image.new("RGB", (width, height))
        image.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(width * height)])
        for components in ((4, 3), (1, 1), (9, 9), (3, 5)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # it reads pixels with Pillow's old getdata()
                expected = reference.encode(image.copy(), *components)
            assert encode(image, *components) == expected, (n, components)
