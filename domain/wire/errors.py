"""The error body of API.md section 1: ``{"error": {code, message, details}}``."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from domain.wire.base import Wire


class ErrorInfo(Wire, frozen=True, kw_only=True):
    code: str
    message: str
    details: dict[str, Any]


class ErrorResponse(Wire, frozen=True, kw_only=True):
    """Every error, whatever its status: `code` is stable (snake_case), `message` a sentence, `details` what helps:
    `fields` (422: wire field -> reason), `reason` (401), `retry_after` (429), `request_id` (500)."""

    error: ErrorInfo


AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")  # where msgspec says a validation error is
_NAMED = re.compile(r"field `(?P<name>[^`]+)`")
_FIRST = re.compile(r"^\.(?P<name>[^.\[]+)")


def field_error(exc: msgspec.ValidationError, *, prefix: str = "", whole: str = "body") -> tuple[str, str]:
    """The wire field and the reason of one msgspec validation error, as ``details.fields`` names them (the HTTP
    bodies and the socket's action data alike): ``prefix`` is a path to strip first (``.data`` of a frame),
    ``whole`` the name of an error about the whole object."""
    text = str(exc)
    at = AT.search(text)
    path = at.group("path") if at else ""
    reason = text[: at.start()] if at else text
    if prefix and path.startswith(prefix):
        path = path[len(prefix) :]
    named = _NAMED.search(reason)
    if reason.startswith("Object missing required field"):
        reason = "is required"
    elif reason.startswith("Object contains unknown field"):
        reason = "is not a known field"
    else:
        reason = reason[:1].lower() + reason[1:]
    first = _FIRST.match(path)
    if first:
        return first.group("name"), reason
    if not path and named:
        return named.group("name"), reason
    return whole, reason
