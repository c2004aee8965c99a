"""Shared schema pieces: strict request base, the error envelope."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Request bodies: unknown fields are rejected (422), no mass assignment."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorResponse(BaseModel):
    error: ErrorInfo


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Malformed body (`malformed_body`)",
        401: "Missing, invalid, expired or revoked credentials",
        403: "Forbidden",
        404: "Not found",
        409: "Conflict",
        410: "Gone (`flow_expired`)",
        413: "Body too large (`payload_too_large`)",
        415: "Body is neither JSON nor MessagePack",
        422: "Validation failed; `details.fields` maps each wire field to its reason",
        429: "Rate limited; see the `Retry-After` header",
    }
    return {s: {"model": ErrorResponse, "description": descriptions.get(s, "Error")} for s in statuses}
