"""The error body of API.md section 1: ``{"error": {code, message, details}}``."""

from __future__ import annotations

from typing import Any

from domain.wire.base import Wire


class ErrorInfo(Wire, frozen=True, kw_only=True):
    code: str
    message: str
    details: dict[str, Any]


class ErrorResponse(Wire, frozen=True, kw_only=True):
    """Every error, whatever its status: `code` is stable (snake_case), `message` a sentence, `details` what helps:
    `fields` (422: wire field -> reason), `reason` (401), `retry_after` (429), `request_id` (500)."""

    error: ErrorInfo
