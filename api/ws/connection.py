"""One client socket: a bounded send queue drained by one writer task, and the event cursor.

Stored events are sent in stream order exactly once per socket: while the socket is replaying (on connect
with ``since``, or catching up after a shard restart) live events are buffered; afterwards only ids greater
than the last one sent go out. A socket whose queue overflows is closed with 4008 and resumes with ``since``.

Every await here has a way out: a replay waiting for room in the queue gives up after ``SLOW_SEND_S`` (4008),
the writer's death (the peer reset the connection) wakes it at once, a close frame that cannot be written is
abandoned after ``CLOSE_TIMEOUT_S``, and a handler still waiting on the socket after that is cancelled
(``abort``), so a vanished client never holds its handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from api.metrics import WS_CONNECTIONS, WS_FRAMES_OUT, observe_delivery
from api.ws.frames import FrameCache, plain_frame
from domain.events import CLOSE_TOO_SLOW
from storage.streams import StreamInfo, parse_stream_id

log = logging.getLogger("i9lyfe.ws")

_closing: set[asyncio.Task[None]] = set()  # close tasks in flight (kept referenced until done)

SEND_QUEUE_MAX = 512
REPLAY_BUFFER_MAX = 5_000
CLOSE_SLOW = CLOSE_TOO_SLOW
SLOW_SEND_S = 10.0  # a replay that finds no room in the send queue for this long closes the socket (4008)
CLOSE_TIMEOUT_S = 2.0  # writing the close frame; then the handler is cancelled if it is still waiting


class Conn:
    def __init__(self, websocket: WebSocket, user_id: int, session_id: int, fmt: str, token_exp: int) -> None:
        self.id = uuid.uuid4().hex[:16]
        self.ws = websocket
        self.user_id = user_id
        self.session_id = session_id
        self.fmt = fmt
        self.token_exp = token_exp
        self.last: tuple[int, int] = (0, 0)
        self.live = False
        self.buffer: list[FrameCache] = []
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=SEND_QUEUE_MAX)
        self.topics: set[str] = set()
        self.presence_versions: dict[str, int] = {}
        self.closed = False
        self.close_code: int | None = None
        self.on_gap: Callable[[Conn], None] | None = None  # the gateway's catch-up, when a live event overtook one
        # The socket's start (api/ws/replay.py ``Replayer.start``) set its position and went live: until then a
        # catch-up asked for (a re-registration with a restarted shard) waits for it, never runs beside it.
        self.started = False
        self.catch_up_wanted = False
        self.handler: asyncio.Task[Any] | None = None  # the endpoint task serving this socket
        self.aborted = False  # the handler was cancelled by ``abort``, not by a shutdown
        self.closed_at: float | None = None  # Unix time the socket was found closed
        self.start_info: StreamInfo | None = None  # the user's stream when the socket was accepted
        self._writer: asyncio.Task[None] | None = None
        self._frames: deque[float] = deque()

    # ------------------------------------------------------------ writer

    def start_writer(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def _write_loop(self) -> None:
        opened_ms = time.time() * 1000  # events appended before this are a replay, not delivery latency
        WS_CONNECTIONS.inc()
        try:
            while True:
                frame = await self.queue.get()
                if frame is None:
                    return
                if self.fmt == "msgpack":
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_text(frame.decode())
                WS_FRAMES_OUT.inc()
                observe_delivery(frame, opened_ms)
        except Exception as exc:  # the peer went away mid-send
            log.debug("writer stopped", extra={"fields": {"error": repr(exc)}})
        finally:
            WS_CONNECTIONS.dec()
            self._mark_closed()

    def _mark_closed(self) -> None:
        """No more frames will be written: wake whoever waits for room in the queue (a replay)."""
        if not self.closed:
            self.closed = True
        if self.closed_at is None:
            self.closed_at = time.time()
        while not self.queue.empty():
            self.queue.get_nowait()

    async def stop_writer(self) -> None:
        if self._writer is not None and not self._writer.done():
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._writer, timeout=2)
            if not self._writer.done():
                self._writer.cancel()

    # ------------------------------------------------------------ sending

    def send_now(self, frame: bytes) -> None:
        """Queue a frame; a socket that cannot keep up is closed (it resumes with ``since``)."""
        if self.closed:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.close_soon(CLOSE_SLOW, "too slow: send queue overflowed; reconnect with since")

    async def send_wait(self, frame: bytes) -> None:
        """Queue a frame, waiting for room (replay applies backpressure instead of dropping), but not for
        longer than ``SLOW_SEND_S``, and not at all once the socket is closed."""
        if self.closed:
            return
        if not self.queue.full():
            self.queue.put_nowait(frame)
            return
        try:
            async with asyncio.timeout(SLOW_SEND_S):
                await self.queue.put(frame)
        except TimeoutError:
            self.close_soon(CLOSE_SLOW, "too slow: replay could not be sent; reconnect with since")

    def send_data(self, type_: str, data: Any, event_id: str | None = None) -> None:
        self.send_now(plain_frame(event_id, type_, data, self.fmt))

    def offer(self, frame: FrameCache) -> None:
        """A stored event from the live path."""
        if not self.live:
            if len(self.buffer) >= REPLAY_BUFFER_MAX:
                self.close_soon(CLOSE_SLOW, "too slow: too many events during replay; reconnect with since")
                return
            self.buffer.append(frame)
            return
        assert frame.event_id is not None
        position = parse_stream_id(frame.event_id)
        if position <= self.last:
            return  # already sent (replay overlap or a retried push)
        if frame.prev is not None and parse_stream_id(frame.prev) != self.last and self.on_gap is not None:
            # An earlier event of this stream has not arrived yet (concurrent writers' pushes can overtake each
            # other): hold this one and read the gap from the stream, so the socket stays in order, gap-free.
            self.live = False
            self.buffer.append(frame)
            self.on_gap(self)
            return
        self.last = position
        self.send_now(frame.get(self.fmt))

    async def replay(self, frames: list[FrameCache]) -> None:
        for frame in frames:
            if self.closed:
                return
            assert frame.event_id is not None
            position = parse_stream_id(frame.event_id)
            if position <= self.last:
                continue
            self.last = position
            await self.send_wait(frame.get(self.fmt))

    def pause(self) -> None:
        self.live = False

    def go_live(self) -> None:
        """End of replay: flush what arrived meanwhile, skipping what the replay already sent."""
        self.live = True
        pending, self.buffer = self.buffer, []
        for frame in sorted(pending, key=lambda f: parse_stream_id(f.event_id or "0-0")):
            self.offer(frame)

    # ------------------------------------------------------------ closing and limits

    def presence_snapshot(self, channel: str, version: int) -> bool:
        """A presence snapshot for ``channel`` taken at ``version``: True when it should be sent, False when a
        live transition at least as new already went out on this socket (the snapshot would move it back)."""
        if self.presence_versions.get(channel, -1) >= version:
            return False
        self.presence_versions[channel] = version
        return True

    def close_soon(self, code: int, reason: str) -> None:
        if self.closed and self.close_code is not None:
            return
        self.close_code = code
        self._mark_closed()
        task = asyncio.get_running_loop().create_task(self._close(code, reason))
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    async def _close(self, code: int, reason: str) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        with contextlib.suppress(Exception):
            if self.ws.client_state == WebSocketState.CONNECTED:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self.ws.close(code=code, reason=reason[:120])
        # The close frame went out (or could not be written): the handler should see the disconnect soon.
        handler = self.handler
        if handler is not None and not handler.done():
            done, _ = await asyncio.wait({handler}, timeout=CLOSE_TIMEOUT_S)
            if not done:
                self.abort()

    def abort(self) -> None:
        """Stop the handler however it is waiting (a peer that neither reads nor answers the close)."""
        self._mark_closed()
        if self.handler is not None and not self.handler.done():
            self.aborted = True
            self.handler.cancel()

    def allow_frame(self, per_second: int = 30, burst: int = 60) -> bool:
        """Inbound frame rate limit (sliding one-second window with a burst allowance)."""
        now = time.monotonic()
        while self._frames and now - self._frames[0] > 1.0:
            self._frames.popleft()
        if len(self._frames) >= max(per_second, burst):
            return False
        self._frames.append(now)
        return True
