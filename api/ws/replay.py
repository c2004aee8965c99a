"""Replay and catch-up of one socket from its user's stream (``events:<user>``).

On connect: ``since`` is checked against what the stream still holds (``StreamInfo.is_lost``); a lost one gets
``resync_required`` first, otherwise every stored event after it is replayed, then the socket goes live.
While live, a catch-up re-reads the stream after the socket's position: when a live event overtook an earlier
one, after a re-registration with a shard, after a pub/sub reconnect, and when the heartbeat finds the stream's
tail ahead of the socket (a push that was dropped). A catch-up that finds the position trimmed away (or the
stream lost) sends ``resync_required`` and continues from the tail.

Each catch-up runs as its own task with a deadline; a socket that closes ends its catch-up at once.
"""

from __future__ import annotations

import asyncio
import logging

from api.ws.connection import CLOSE_SLOW, Conn
from api.ws.frames import FrameCache
from storage.outage import OUTAGES
from storage.streams import StreamInfo, Streams, parse_stream_id

log = logging.getLogger("i9lyfe.gateway")

REPLAY_PAGE = 500
READ_TIMEOUT_S = 5.0  # one Redis read of the stream
CATCH_UP_S = 30.0  # a whole catch-up; past it the socket is closed (4008) and resumes with since


class Replayer:
    def __init__(self, streams: Streams) -> None:
        self.streams = streams
        self._running: dict[str, asyncio.Task[None]] = {}

    @property
    def running(self) -> int:
        return len(self._running)

    async def start(self, conn: Conn, since: str | None) -> bool:
        """Replay from ``since`` (or start at the stream's end) and go live. False when ``since`` was lost."""
        info = conn.start_info if since is None else None
        if info is None:
            async with asyncio.timeout(READ_TIMEOUT_S):
                info = await self.streams.info(conn.user_id)
        lost = since is not None and info.is_lost(since)
        if since is None or lost:
            conn.last = parse_stream_id(info.tail)
        else:
            conn.last = parse_stream_id(since)
        if lost:  # first frame, before anything live that arrived meanwhile
            self._send_resync(conn, info, "since is older than the retained events")
        else:
            await self._replay(conn)
        conn.go_live()
        conn.started = True
        if conn.catch_up_wanted:  # asked for while starting (e.g. its shard restarted): read what it may miss
            self.schedule(conn)
        return not lost

    def schedule(self, conn: Conn) -> None:
        """Catch ``conn`` up in a task of its own (at most one per socket at a time). A socket still starting
        gets it once started: a catch-up beside the start would read from before the socket's position, which
        the start then sets back, and send events twice."""
        if conn.closed or conn.id in self._running:
            return
        if not conn.started:
            conn.catch_up_wanted = True
            return
        conn.catch_up_wanted = False
        task = asyncio.get_running_loop().create_task(self._catch_up(conn))
        self._running[conn.id] = task

        def done(_task: asyncio.Task[None], cid: str = conn.id) -> None:
            if self._running.get(cid) is _task:
                del self._running[cid]

        task.add_done_callback(done)

    def cancel(self, conn: Conn) -> None:
        task = self._running.pop(conn.id, None)
        if task is not None:
            task.cancel()

    async def _catch_up(self, conn: Conn) -> None:
        conn.pause()
        try:
            async with asyncio.timeout(CATCH_UP_S):
                async with asyncio.timeout(READ_TIMEOUT_S):
                    info = await self.streams.info(conn.user_id)
                position = f"{conn.last[0]}-{conn.last[1]}"
                if conn.last != (0, 0) and info.is_lost(position):
                    conn.last = parse_stream_id(info.tail)
                    self._send_resync(conn, info, "events after this socket's position are no longer retained")
                else:
                    await self._replay(conn)
        except TimeoutError:
            log.warning("catch-up timed out", extra={"fields": {"user": conn.user_id}})
            conn.close_soon(CLOSE_SLOW, "too slow: catch-up timed out; reconnect with since")
        except Exception as exc:  # Redis unreachable: the next heartbeat tries again
            OUTAGES.note("a socket's catch-up failed (the next heartbeat tries again)", exc, log)
        finally:
            self._running.pop(conn.id, None)  # before go_live, which may find another gap and ask again
            conn.go_live()

    async def _replay(self, conn: Conn) -> None:
        while not conn.closed:
            after = f"{conn.last[0]}-{conn.last[1]}"
            async with asyncio.timeout(READ_TIMEOUT_S):
                page = await self.streams.read_after(conn.user_id, after, REPLAY_PAGE)
            if not page:
                return
            await conn.replay([FrameCache(e.id, e.type, e.data) for e in page])
            if len(page) < REPLAY_PAGE:
                return

    @staticmethod
    def _send_resync(conn: Conn, info: StreamInfo, reason: str) -> None:
        conn.send_data("resync_required", {"reason": reason, "oldest_id": info.first})
