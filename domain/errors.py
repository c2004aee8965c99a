"""The one DomainError tree. Each error has a stable ``code`` and an ``http_status``; the api maps it to the
API.md error shape and to WebSocket acks / close codes. Errors cross Ray as plain tuples (``to_wire``), never
as pickled exceptions."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "bad_request"
    http_status = 400
    default_message = "The request could not be processed."

    def __init__(self, message: str | None = None, *, code: str | None = None, details: dict[str, Any] | None = None):
        self.message = message or self.default_message
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = details or {}
        super().__init__(self.message)

    def to_wire(self) -> tuple[str, int, str, dict[str, Any], int | None]:
        """The error as plain data to cross Ray (its ``Retry-After`` included, for a 429 or a 503)."""
        return (self.code, self.http_status, self.message, self.details, getattr(self, "retry_after", None))

    @staticmethod
    def from_wire(wire: tuple[Any, ...]) -> DomainError:
        code, status, message, details = wire[:4]
        retry_after = wire[4] if len(wire) > 4 else None
        cls = _BY_STATUS.get(status, DomainError)
        err = cls.__new__(cls)  # the subclasses' __init__ signatures differ; restore the fields directly
        Exception.__init__(err, message)
        err.message, err.code, err.details, err.http_status = message, code, dict(details), status
        if isinstance(err, RateLimited):
            err.retry_after = int(details.get("retry_after", 1))
        elif isinstance(err, Unavailable) and retry_after is not None:
            err.retry_after = max(1, int(retry_after))
        return err


class MalformedBody(DomainError):
    code = "malformed_body"
    http_status = 400
    default_message = "The request body could not be parsed."


class Unauthenticated(DomainError):
    """Every 401 is ``unauthenticated`` (a failed login's ``invalid_credentials`` aside); why, where it helps the
    client, goes in ``details.reason``: token_expired, invalid_token, session_revoked, refresh_reused,
    invalid_refresh_token (API.md 1)."""

    code = "unauthenticated"
    http_status = 401
    default_message = "Authentication is required."

    def __init__(
        self,
        message: str | None = None,
        *,
        reason: str | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ):
        merged = dict(details or {})
        if reason is not None:
            merged["reason"] = reason
        super().__init__(message, code=code, details=merged)


class InvalidCredentials(Unauthenticated):
    code = "invalid_credentials"
    default_message = "The login or password is incorrect."


class Forbidden(DomainError):
    code = "forbidden"
    http_status = 403
    default_message = "You may not do this."


class NotFound(DomainError):
    code = "not_found"
    http_status = 404
    default_message = "Nothing was found here."


class MethodNotAllowed(DomainError):
    code = "method_not_allowed"
    http_status = 405
    default_message = "This method is not allowed on this path."


class Conflict(DomainError):
    code = "conflict"
    http_status = 409
    default_message = "The request conflicts with the current state."


class Gone(DomainError):
    code = "gone"
    http_status = 410
    default_message = "This is no longer available."


class PayloadTooLarge(DomainError):
    code = "payload_too_large"
    http_status = 413
    default_message = "The request body is too large."


class UnsupportedMediaType(DomainError):
    code = "unsupported_media_type"
    http_status = 415
    default_message = "Send application/json or application/msgpack."


class ValidationFailed(DomainError):
    code = "validation_failed"
    http_status = 422
    default_message = "Some fields are invalid."

    def __init__(
        self,
        fields: dict[str, str] | None = None,
        message: str | None = None,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ):
        merged = dict(details or {})
        if fields is not None:
            merged["fields"] = fields
        super().__init__(message, code=code, details=merged)


class RateLimited(DomainError):
    code = "rate_limited"
    http_status = 429
    default_message = "Too many requests; try again later."

    def __init__(
        self,
        retry_after: int,
        message: str | None = None,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ):
        self.retry_after = max(1, int(retry_after))
        super().__init__(message, code=code, details={**(details or {}), "retry_after": self.retry_after})


class Internal(DomainError):
    code = "internal"
    http_status = 500
    default_message = "Something went wrong on our side."


class Unavailable(DomainError):
    """Overload or an unreachable dependency: a pool, the hash executor or a shard did not answer within its
    deadline. The client may retry after ``retry_after`` seconds (the ``Retry-After`` header); the class
    attribute is the default, so an Unavailable rebuilt from the wire (``from_wire``) carries it too."""

    code = "unavailable"
    http_status = 503
    default_message = "The service is temporarily unavailable."
    retry_after = 1

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: int | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ):
        if retry_after is not None:
            self.retry_after = max(1, int(retry_after))
        super().__init__(message, code=code, details=details)


_BY_STATUS: dict[int, type[DomainError]] = {
    400: MalformedBody,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationFailed,
    429: RateLimited,
    500: Internal,
    503: Unavailable,
}
