"""uvicorn's httptools protocol with a cap on request heads (``python -m api`` serves with it).

httptools hands a header over only once it is complete and uvicorn sets no limit, so a 256 MiB header was read
whole (and answered 200 after 82 s, the worker keeping 300 MB). Here the request line and headers of one
request may take at most ``MAX_HEAD_BYTES`` (16 KiB) and ``MAX_HEADERS`` (100) fields: past either, the answer is
431 in the API error shape (code ``headers_too_large``) and the connection is closed without reading more.

Two counts enforce it: the bytes received while a head is incomplete (so a head arriving in pieces never grows
past one read beyond the cap), and the exact size and number of the fields the parser hands over (so a head
that arrives in one piece with a body is measured exactly). A WebSocket upgrade request is an HTTP request
here first, so it is capped the same way before the WebSocket protocol sees it. A request httptools cannot
parse at all (a NUL in a header, a broken request line) gets 400 ``malformed_request`` in the same shape, where
uvicorn answered it in plain text.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

log = logging.getLogger("i9lyfe.http")

MAX_HEAD_BYTES = 16 * 1024
MAX_HEADERS = 100
_FIELD_OVERHEAD = 4  # ": " and CRLF

Headers = list[tuple[bytes, bytes]]


class HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing; httptools re-raises it as HttpParserCallbackError."""


def error_response(status: int, code: str, message: str, details: dict[str, Any], default_headers: Headers) -> bytes:
    """A complete HTTP response in the API error shape that closes the connection (no ASGI app involved)."""
    body = orjson.dumps({"error": {"code": code, "message": message, "details": details}})
    head = [STATUS_LINE[status]]
    for name, value in default_headers:
        head += [name, b": ", value, b"\r\n"]
    head += [
        b"content-type: application/json\r\n",
        b"content-length: " + str(len(body)).encode() + b"\r\n",
        b"connection: close\r\n\r\n",
    ]
    return b"".join(head) + body


def headers_too_large_response(default_headers: Headers) -> bytes:
    message = f"The request line and headers may take at most {MAX_HEAD_BYTES} bytes and {MAX_HEADERS} header fields."
    details = {"max_bytes": MAX_HEAD_BYTES, "max_headers": MAX_HEADERS}
    return error_response(431, "headers_too_large", message, details, default_headers)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._in_head = True  # between the end of one request and the end of the next one's headers
        self._head_received = 0  # bytes received meanwhile (an upper bound of the head's size)
        self._head_size = 0  # exact: request target + header fields handed over so far
        self._head_fields = 0
        self._refused = False

    def data_received(self, data: bytes) -> None:
        """uvicorn's ``data_received`` (0.54), plus the head caps."""
        if self._refused:
            return
        if self._in_head:
            self._head_received += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, HeadTooLarge) or self._refused:
                self._refuse("fields")
                return
            self._malformed()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_head and self._head_received > MAX_HEAD_BYTES:
            self._refuse("bytes")

    def _malformed(self) -> None:
        """Not HTTP (a NUL in a header, a broken request line): 400 in the API error shape, not uvicorn's text."""
        log.warning("malformed HTTP request: answered 400 and closed", extra={"fields": {"client": self._peer()}})
        if not self.transport.is_closing():
            message = "The HTTP request could not be parsed."
            self.transport.write(error_response(400, "malformed_request", message, {}, self._default_headers()))
            self.transport.close()

    def _peer(self) -> str:
        return (self.client or ("", 0))[0]

    def _default_headers(self) -> Headers:
        return list(self.server_state.default_headers)

    def _refuse(self, why: str) -> None:
        self._refused = True
        self._in_head = False
        log.warning(
            "request head too large: answered 431 and closed",
            extra={
                "fields": {
                    "client": self._peer(),
                    "by": why,
                    "received": self._head_received,
                    "fields_seen": self._head_fields,
                }
            },
        )
        if not self.transport.is_closing():
            self.transport.write(headers_too_large_response(self._default_headers()))
            self.transport.close()

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_size = 0
        self._head_fields = 0

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        if self._head_size > MAX_HEAD_BYTES:
            self._refused = True
            raise HeadTooLarge
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + _FIELD_OVERHEAD
        self._head_fields += 1
        if self._head_size > MAX_HEAD_BYTES or self._head_fields > MAX_HEADERS:
            self._refused = True
            raise HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_received = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_received = 0
