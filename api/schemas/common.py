"""Shared schema pieces: strict request base, the error envelope."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError


class Strict(BaseModel):
    """Request bodies: unknown fields are rejected (422), no mass assignment, and no string may hold a NUL
    character (PostgreSQL text cannot store one: it would otherwise surface as a 500)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _has_nul(value):
            raise PydanticCustomError("nul_character", "must not contain NUL characters")
        return value


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorResponse(BaseModel):
    error: ErrorInfo


STATUS_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed body (`malformed_body`)",
    401: "Missing, invalid, expired or revoked credentials (`unauthenticated`, the reason in `details.reason`)",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    410: "Gone (`flow_expired`)",
    413: "Body too large (`payload_too_large`)",
    415: "Body is neither JSON nor MessagePack (`unsupported_media_type`)",
    422: "Validation failed; `details.fields` maps each wire field to its reason",
    429: "Rate limited (`rate_limited`); see the `Retry-After` header",
    500: "Internal error (`internal`); `details.request_id` names the request in the server's logs",
    503: "Temporarily unavailable (`unavailable`): overloaded or a dependency is down; see the `Retry-After` header",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers an operation declares beyond those every operation has (``api/openapi.py`` adds 500 and
    503 everywhere, and 400/413/415/422 wherever there is a body or a parameter)."""
    return {s: {"model": ErrorResponse, "description": STATUS_DESCRIPTIONS.get(s, "Error")} for s in statuses}
