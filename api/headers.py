"""Security headers on every response, as one pure-ASGI layer outside everything else (the codec's own errors
included): ``X-Content-Type-Options: nosniff`` everywhere, and ``Cache-Control: no-store`` with
``Pragma: no-cache`` on every /auth response (tokens, flow ids and emails must never sit in a cache)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

NOSNIFF = (b"x-content-type-options", b"nosniff")
NO_STORE = ((b"cache-control", b"no-store"), (b"pragma", b"no-cache"))
AUTH_PREFIX = "/api/v1/auth/"
_STARTS = {"http.response.start", "websocket.http.response.start"}


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        extra = [NOSNIFF, *NO_STORE] if scope["path"].startswith(AUTH_PREFIX) else [NOSNIFF]

        async def send_with_headers(message: Message) -> None:
            if message["type"] in _STARTS:
                headers = [(k, v) for k, v in message.get("headers", []) if k not in {h for h, _ in extra}]
                message = {**message, "headers": headers + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)
