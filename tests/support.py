"""Test helpers: an HTTP client speaking JSON or MessagePack, an SMTP catcher, polling with a deadline."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import itertools
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import msgpack
import orjson
from aiosmtpd.controller import Controller

T = TypeVar("T")

ME_KEYS = frozenset(
    {
        "id",
        "username",
        "name",
        "avatar",
        "bio",
        "followers_count",
        "following_count",
        "posts_count",
        "created_at",
        "email",
        "birthday",
        "followed_by_me",
        "follows_me",
    }
)


def years_ago(years: int) -> dt.date:
    today = dt.datetime.now(dt.UTC).date()
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February
        return today.replace(year=today.year - years, day=28)


_ip_counter = itertools.count(1)
_name_counter = itertools.count(1)


def fresh_ip() -> str:
    """A distinct client IP per test client (the test server trusts X-Forwarded-For from 127.0.0.1)."""
    n = next(_ip_counter)
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def unique(prefix: str) -> str:
    return f"{prefix}{int(time.time() * 1000) % 10_000_000}{next(_name_counter)}"


async def wait_until(check: Callable[[], Awaitable[T | None]], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


@dataclass
class Reply:
    status: int
    body: Any
    headers: httpx.Headers

    @property
    def error_code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"].get("code")
        return None


class Api:
    """A client of our API in one encoding: bodies sent and responses read as JSON or MessagePack."""

    def __init__(self, base_url: str, fmt: str = "json", ip: str | None = None) -> None:
        self.fmt = fmt
        self.ip = ip or fresh_ip()
        self.token: str | None = None
        self.username = ""  # set by the register fixture
        self.user_id = ""
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30)

    async def close(self) -> None:
        await self.http.aclose()

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"X-Forwarded-For": self.ip}
        if self.fmt == "msgpack":
            headers["Accept"] = "application/msgpack"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def decode(self, response: httpx.Response) -> Any:
        if not response.content:
            return None
        ctype = response.headers.get("content-type", "")
        if ctype.startswith("application/msgpack"):
            return msgpack.unpackb(response.content, raw=False)
        if ctype.startswith("application/json"):
            return orjson.loads(response.content)
        return response.text

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        params: dict[str, Any] | None = None,
    ) -> Reply:
        hdrs = self.headers(headers)
        content: bytes | None = raw
        if body is not None and raw is None:
            if self.fmt == "msgpack":
                content = msgpack.packb(body, use_bin_type=True)
                hdrs.setdefault("Content-Type", "application/msgpack")
            else:
                content = orjson.dumps(body)
                hdrs.setdefault("Content-Type", "application/json")
        response = await self.http.request(method, path, content=content, headers=hdrs, params=params)
        if (
            self.fmt == "msgpack"
            and response.content
            and response.headers.get("content-type", "").startswith("application/json")
        ):
            raise AssertionError(f"asked for msgpack, got JSON from {method} {path}")
        return Reply(response.status_code, self.decode(response), response.headers)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("POST", path, body, **kw)

    async def patch(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("PATCH", path, body, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("PUT", path, body, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.request("DELETE", path, **kw)


def assert_error(reply: Reply, status: int, code: str | None = None) -> dict[str, Any]:
    assert reply.status == status, (reply.status, reply.body)
    assert isinstance(reply.body, dict) and set(reply.body) == {"error"}, reply.body
    err = reply.body["error"]
    assert set(err) == {"code", "message", "details"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["details"], dict)
    if code is not None:
        assert err["code"] == code, err
    return dict(err)


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd API)
        message = email.message_from_bytes(envelope.content)
        with self.box.lock:
            for rcpt in envelope.rcpt_tos:
                self.box.messages.append((rcpt.lower(), message))
        return "250 OK"


class Mailbox:
    """A real SMTP server (aiosmtpd) in a thread; the app under test sends its mail here."""

    CODE = re.compile(r"\b(\d{6})\b")

    def __init__(self) -> None:
        self.messages: list[tuple[str, email.message.Message]] = []
        self.lock = threading.Lock()
        from actors.runtime.cluster import free_port

        self.port = free_port()
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def to(self, address: str) -> list[email.message.Message]:
        with self.lock:
            return [m for rcpt, m in self.messages if rcpt == address.lower()]

    async def wait_count(self, address: str, count: int, timeout: float = 10.0) -> list[email.message.Message]:
        async def check() -> list[email.message.Message] | None:
            found = self.to(address)
            return found if len(found) >= count else None

        return await wait_until(check, timeout)

    async def code(self, address: str, nth: int = 1) -> str:
        """The code in the ``nth`` mail (1-based) sent to ``address``, waiting for it to arrive."""
        message = (await self.wait_count(address, nth))[nth - 1]
        body = message.get_payload(decode=True)
        text = body.decode() if isinstance(body, bytes) else str(message.get_payload())
        match = self.CODE.search(text)
        assert match, text
        return match.group(1)


class WsClient:
    """A real WebSocket client (websockets lib) reading frames in the background into a queue."""

    def __init__(self, conn: Any, fmt: str) -> None:
        self.conn = conn
        self.fmt = fmt
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.seen: list[dict[str, Any]] = []
        self._refs = itertools.count(1)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self.closed: asyncio.Future[tuple[int | None, str]] = asyncio.get_running_loop().create_future()

    @classmethod
    async def connect(
        cls,
        base_url: str,
        token: str | None = None,
        *,
        fmt: str = "json",
        since: str | None = None,
        query_token: bool = False,
        origin: str | None = None,
        subprotocols: list[str] | None = None,
    ) -> WsClient:
        import websockets

        url = base_url.replace("http://", "ws://") + "/api/v1/ws"
        params = []
        if since is not None:
            params.append(f"since={since}")
        headers: dict[str, str] = {}
        if token and query_token:
            params.append(f"access_token={token}")
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        if params:
            url += "?" + "&".join(params)
        protocols = subprotocols if subprotocols is not None else [f"i9.{fmt}"]
        conn = await websockets.connect(
            url,
            additional_headers=headers,
            subprotocols=protocols or None,
            origin=origin,
            max_size=2**22,
            open_timeout=10,
        )
        return cls(conn, fmt)

    async def _read(self) -> None:
        import websockets

        try:
            async for raw in self.conn:
                frame = msgpack.unpackb(raw, raw=False) if isinstance(raw, bytes) else orjson.loads(raw)
                if self.fmt == "msgpack":
                    assert isinstance(raw, bytes), "msgpack socket got a text frame"
                else:
                    assert isinstance(raw, str), "json socket got a binary frame"
                self.seen.append(frame)
                await self.frames.put(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            if not self.closed.done():
                self.closed.set_result((self.conn.close_code, self.conn.close_reason or ""))

    async def send_raw(self, raw: bytes | str) -> None:
        await self.conn.send(raw)

    async def send(self, action: str, data: dict[str, Any] | None = None, ref: str | None = None) -> str:
        ref = ref or f"r{next(self._refs)}"
        frame = {"ref": ref, "action": action, "data": data or {}}
        await self.conn.send(msgpack.packb(frame) if self.fmt == "msgpack" else orjson.dumps(frame).decode())
        return ref

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def next_of(self, type_: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame of ``type_``; frames of other types before it are kept in ``skipped``."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.next(max(0.01, deadline - time.monotonic()))
            if frame["type"] == type_:
                return frame

    async def ack(self, ref: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.next(max(0.01, deadline - time.monotonic()))
            if frame["type"] == "ack" and frame["data"].get("ref") == ref:
                return dict(frame["data"])

    async def request(self, action: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.ack(await self.send(action, data))

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Frames that arrive within ``seconds`` (for asserting that nothing else came)."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(await asyncio.wait_for(self.frames.get(), left))
            except TimeoutError:
                break
        return got

    async def gateway(self) -> str:
        reply = await self.request("ping")
        assert reply["ok"], reply
        return str(reply["result"]["gateway"])

    async def close(self) -> None:
        await self.conn.close()
        self._reader.cancel()


class HeldProxy:
    """A TCP proxy in front of a real server (Redis, PostgreSQL) whose replies can be held back: ``hold()`` keeps
    every byte the server sends until ``release()``. The request has reached the server and run there; the client
    just does not hear back (a slow or partitioned reply path)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.replies = asyncio.Event()
        self.replies.set()
        self.requests_seen = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> HeldProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    def hold(self) -> None:
        self.requests_seen.clear()
        self.replies.clear()

    def release(self) -> None:
        self.replies.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]
        for task in (self._pipe(reader, up_writer, False), self._pipe(up_reader, writer, True)):
            made = asyncio.get_running_loop().create_task(task)
            self._tasks.add(made)
            made.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: bool) -> None:
        try:
            while data := await reader.read(65536):
                if reply:
                    await self.replies.wait()
                else:
                    self.requests_seen.set()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
