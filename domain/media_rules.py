"""What may be uploaded, and for what (issue 9): kinds, content types, sizes per kind, kinds per purpose."""

from __future__ import annotations

import re
from typing import Final

from domain.errors import PayloadTooLarge, ValidationFailed

MB: Final = 1024 * 1024

# Largest object per kind, in bytes.
MAX_BYTES: Final[dict[str, int]] = {"image": 20 * MB, "video": 200 * MB, "audio": 50 * MB, "file": 100 * MB}

# Declarable content types and their kind. A "file" is any document; its bytes must still match its type.
KIND_OF: Final[dict[str, str]] = {
    "image/jpeg": "image",
    "image/png": "image",
    "image/webp": "image",
    "image/gif": "image",
    "video/mp4": "video",
    "video/quicktime": "video",
    "video/webm": "video",
    "audio/mpeg": "audio",
    "audio/mp4": "audio",
    "audio/aac": "audio",
    "audio/ogg": "audio",
    "audio/webm": "audio",
    "audio/wav": "audio",
    "application/pdf": "file",
    "application/zip": "file",
    "text/plain": "file",
    "text/csv": "file",
    "application/octet-stream": "file",
}
ALIASES: Final[dict[str, str]] = {"image/jpg": "image/jpeg", "audio/x-wav": "audio/wav", "audio/mp3": "audio/mpeg"}

# Kinds each purpose takes: an avatar is an image; posts and comments take images and video; chat takes all.
PURPOSE_KINDS: Final[dict[str, frozenset[str]]] = {
    "avatar": frozenset({"image"}),
    "post": frozenset({"image", "video"}),
    "comment": frozenset({"image", "video"}),
    "chat": frozenset({"image", "video", "audio", "file"}),
}

MAX_NAME = 255
NAME_PATTERN: Final = r"^[^\x00-\x1f\x7f/\\]+$"  # a file name: no control characters, no slashes
UPLOAD_TTL_S: Final = 3600  # an upload URL works for an hour
MAX_PENDING: Final = 50  # uploads a user may have started and not completed in the last UPLOAD_TTL_S


def normalize_type(content_type: str) -> str:
    base = content_type.split(";", 1)[0].strip().lower()
    return ALIASES.get(base, base)


def check_upload(purpose: str, content_type: str, size: int, name: str | None) -> tuple[str, str, str | None]:
    """(kind, content type, name) of an upload request, or ValidationFailed naming the wire field at fault."""
    kinds = PURPOSE_KINDS.get(purpose)
    if kinds is None:
        raise ValidationFailed(fields={"purpose": "must be one of post, comment, avatar, chat"})
    ctype = normalize_type(content_type)
    kind = KIND_OF.get(ctype)
    if kind is None:
        raise ValidationFailed(
            message="This content type cannot be uploaded.",
            code="unsupported_content_type",
            fields={"content_type": f"not one of {', '.join(sorted(KIND_OF))}"},
        )
    if kind not in kinds:
        raise ValidationFailed(
            message=f"A {purpose} takes {' or '.join(sorted(kinds))}, not {kind}.",
            code="unsupported_content_type",
            fields={"content_type": f"{kind} is not allowed for {purpose}"},
        )
    limit = MAX_BYTES[kind]
    if size > limit:
        raise PayloadTooLarge(
            f"A {kind} may be at most {limit // MB} MB.",
            details={"max_bytes": limit, "fields": {"size": f"at most {limit} bytes for {kind}"}},
        )
    if name is not None and (not 1 <= len(name) <= MAX_NAME or not re.fullmatch(NAME_PATTERN, name)):
        raise ValidationFailed(fields={"name": f"1-{MAX_NAME} characters, no control characters or slashes"})
    return kind, ctype, name
