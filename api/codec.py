"""JSON and MessagePack on every endpoint, through one code path.

``CodecMiddleware`` (pure ASGI, outermost) does for every HTTP request:
- request id (``X-Request-Id`` in, or a new one) in the log context and the response;
- the body size limit (413), the content-type check (415) and MessagePack decoding (400 if malformed): a
  MessagePack body is handed to the app as JSON, so FastAPI validates both the same way;
- response encoding: routes encode their bodies once in the negotiated format (``api/responses.py``), so an
  already-encoded MessagePack body passes through untouched (a ``streamed_body`` path, a media upload, is handed
  to its route unread: raw bytes, streamed, limited by the route); only a response that is still JSON (Starlette's
  own, say) is re-encoded as MessagePack when ``Accept`` names MessagePack, as a fallback. ``json_only_paths``
  (the OpenAPI document) are always JSON;
- any exception the app lets through becomes a 500 ``internal`` error with the request id, never a stack trace
  (an overloaded or unreachable dependency a 503 ``unavailable`` with Retry-After, api/overload.py);
- one structured access-log line.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

import msgpack
import msgspec
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.logs import request_id_var
from api.overload import as_unavailable
from domain.errors import DomainError, Internal, MalformedBody, PayloadTooLarge, UnsupportedMediaType

log = logging.getLogger("i9lyfe.http")

MSGPACK_TYPES = ("application/msgpack", "application/vnd.msgpack", "application/x-msgpack")
MSGPACK = "application/msgpack"
JSON = "application/json"
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def is_json_type(mt: str) -> bool:
    return mt == JSON or (mt.startswith("application/") and mt.endswith("+json"))


def wants_msgpack(accept: str | None) -> bool:
    """True when Accept names a MessagePack type with q > 0 and ranks it at least as high as JSON."""
    if not accept:
        return False
    best_mp = 0.0
    best_json = 0.0
    for part in accept.split(","):
        pieces = [p.strip() for p in part.split(";")]
        mt = pieces[0].lower()
        q = 1.0
        for param in pieces[1:]:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if mt in MSGPACK_TYPES:
            best_mp = max(best_mp, q)
        elif mt in (JSON, "application/*", "*/*"):
            best_json = max(best_json, q if mt == JSON else q - 0.001)
    return best_mp > 0 and best_mp >= best_json


_JSON_ENCODER = msgspec.json.Encoder(enc_hook=str)
_MSGPACK_ENCODER = msgspec.msgpack.Encoder(enc_hook=str)


def encode(obj: Any, as_msgpack: bool) -> bytes:
    """A wire struct (domain/wire) or plain data in the negotiated format, once."""
    return _MSGPACK_ENCODER.encode(obj) if as_msgpack else _JSON_ENCODER.encode(obj)


def error_body(err: DomainError, request_id: str | None) -> dict[str, Any]:
    details = dict(err.details)
    if request_id and err.http_status >= 500:
        details["request_id"] = request_id
    return {"error": {"code": err.code, "message": err.message, "details": details}}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class CodecMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        json_only_paths: frozenset[str] = frozenset(),
        streamed_body: re.Pattern[str] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.json_only_paths = json_only_paths
        # Paths whose body is raw bytes the route streams itself, with its own limit (media uploads).
        self.streamed_body = streamed_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            token = request_id_var.set(_header(scope, b"x-request-id") or uuid.uuid4().hex)
            try:
                await self.app(scope, receive, send)
            finally:
                request_id_var.reset(token)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        incoming = _header(scope, b"x-request-id")
        rid = incoming if incoming and len(incoming) <= 64 and incoming.isascii() else uuid.uuid4().hex
        token = request_id_var.set(rid)
        as_msgpack = wants_msgpack(_header(scope, b"accept")) and scope["path"] not in self.json_only_paths
        state = {"status": 0, "started": False}
        try:
            try:
                scope, receive = await self._prepare_request(scope, receive)
            except DomainError as err:
                await self._send_error(send, err, rid, as_msgpack, state)
            else:
                await self._call_app(scope, receive, send, rid, as_msgpack, state)
        finally:
            log.info(
                "request",
                extra={
                    "fields": {
                        "method": scope.get("method"),
                        "path": scope.get("path"),
                        "status": state["status"],
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        "client": (scope.get("client") or ("", 0))[0],
                    }
                },
            )
            request_id_var.reset(token)

    async def _prepare_request(self, scope: Scope, receive: Receive) -> tuple[Scope, Receive]:
        if scope["method"] not in BODY_METHODS:
            return scope, receive
        if self.streamed_body is not None and self.streamed_body.fullmatch(scope["path"]):
            return scope, receive
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                raise MalformedBody("Content-Length is not a number.")
            if int(declared) > self.max_body_bytes:
                raise PayloadTooLarge(details={"max_bytes": self.max_body_bytes})
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise PayloadTooLarge(details={"max_bytes": self.max_body_bytes})
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = list(scope["headers"])
        if body:
            mt = media_type(_header(scope, b"content-type"))
            if mt in MSGPACK_TYPES:
                try:
                    decoded = msgpack.unpackb(body, raw=False, strict_map_key=True, timestamp=0)
                    body = orjson.dumps(decoded)
                except Exception as exc:
                    raise MalformedBody("The MessagePack body could not be decoded.") from exc
                headers = [(k, v) for k, v in headers if k not in (b"content-type", b"content-length")]
                headers += [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]
            elif mt and not is_json_type(mt):
                raise UnsupportedMediaType(details={"content_type": mt})
            elif not mt:  # JSON is the default encoding (API.md 1)
                headers = [(k, v) for k, v in headers if k != b"content-type"]
                headers.append((b"content-type", JSON.encode()))
        scope = dict(scope, headers=headers)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return scope, replay

    async def _call_app(
        self, scope: Scope, receive: Receive, send: Send, rid: str, as_msgpack: bool, state: dict[str, Any]
    ) -> None:
        held_start: Message | None = None
        held_body: list[bytes] = []

        async def wrapped_send(message: Message) -> None:
            nonlocal held_start
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", [])]
                headers.append((b"x-request-id", rid.encode()))
                headers.append((b"vary", b"Accept"))
                message = dict(message, headers=headers)
                ctype = media_type(dict(headers).get(b"content-type", b"").decode("latin-1"))
                if as_msgpack and is_json_type(ctype):
                    held_start = message
                    return
                state["started"] = True
                await send(message)
                return
            if message["type"] == "http.response.body" and held_start is not None:
                held_body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                raw = b"".join(held_body)
                packed = msgpack.packb(orjson.loads(raw), use_bin_type=True) if raw else b""
                headers = [(k, v) for k, v in held_start["headers"] if k not in (b"content-type", b"content-length")]
                headers += [(b"content-type", MSGPACK.encode()), (b"content-length", str(len(packed)).encode())]
                state["started"] = True
                await send(dict(held_start, headers=headers))
                await send({"type": "http.response.body", "body": packed, "more_body": False})
                return
            await send(message)

        try:
            await self.app(scope, receive, wrapped_send)
        except Exception as exc:
            shed = as_unavailable(exc)  # overload or an unreachable dependency: 503 with Retry-After, no stack
            if shed is None:
                log.exception("unhandled error")
            if state["started"]:
                raise
            await self._send_error(send, shed or Internal(), rid, as_msgpack, state)

    async def _send_error(
        self, send: Send, err: DomainError, rid: str, as_msgpack: bool, state: dict[str, Any]
    ) -> None:
        body = encode(error_body(err, rid), as_msgpack)
        headers = [
            (b"content-type", (MSGPACK if as_msgpack else JSON).encode()),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", rid.encode()),
            (b"vary", b"Accept"),
        ]
        retry_after = getattr(err, "retry_after", None)
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        state["status"] = err.http_status
        state["started"] = True
        await send({"type": "http.response.start", "status": err.http_status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
