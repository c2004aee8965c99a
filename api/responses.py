"""One encoding per response: every route (and every error) answers through ``encoded()``.

The body is encoded once, straight from plain data to JSON (orjson) or MessagePack (msgpack) as ``Accept``
negotiates (``api/codec.py`` ``wants_msgpack``). Returning a ``Response`` makes FastAPI skip its own response
validation and serialization; the routes keep ``response_model=`` / ``responses=`` for the OpenAPI document only,
and the codec middleware passes an already-encoded MessagePack body through untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request, Response

from api.codec import JSON, MSGPACK, encode, wants_msgpack


class Encoded(Response):
    """A response whose body is already encoded bytes (no render step, headers built once)."""

    def __init__(
        self, body: bytes, status_code: int, media_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.media_type = media_type
        self.background = None
        raw = [(b"content-length", str(len(body)).encode()), (b"content-type", media_type.encode())]
        if headers:
            raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self.raw_headers = raw


def encoded(request: Request, data: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Encoded:
    """``data`` (plain dicts, lists, str, int, bool, None) encoded once in the negotiated format."""
    as_msgpack = wants_msgpack(request.headers.get("accept"))
    return Encoded(encode(data, as_msgpack), status_code, MSGPACK if as_msgpack else JSON, headers)


def no_content(headers: Mapping[str, str] | None = None) -> Response:
    """204: no body, so nothing to encode."""
    return Response(status_code=204, headers=dict(headers) if headers else None)
