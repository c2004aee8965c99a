"""The gateway of one api process: its id, its sockets, and its one Redis pub/sub connection.

It subscribes once to ``gw:<id>`` (events routed here by the UserShards) and to topic channels
(``topic:presence:<user>``, ``topic:post:<id>``) only while a local socket needs them (reference counted).
Replay and catch-up live in ``api/ws/replay.py``; keeping the shards' view of these sockets right (versioned
registration, heartbeat, tail checks) in ``api/ws/shard_sync.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from typing import Any

import msgpack
import redis.asyncio as aioredis

from actors.runtime.client import ShardClient
from actors.runtime.services import Services
from api.reads.feed import FeedReader
from api.reads.posts import PostReader
from api.ws.connection import Conn
from api.ws.frames import FrameCache, plain_frame
from api.ws.live_counts import LiveCounts
from api.ws.replay import Replayer
from api.ws.shard_sync import ShardSync
from domain.errors import Unavailable
from domain.events import CLOSE_GOING_AWAY, CLOSE_SERVICE_RESTART, CLOSE_UNAUTHENTICATED, FEED_POST_EVENT
from storage import feed as feed_store
from storage.live_cache import CACHE_CHANNEL
from storage.outage import OUTAGES
from storage.streams import Streams

log = logging.getLogger("i9lyfe.gateway")

REDIS_CALL_S = 5.0
FEED_ATTACH_S = 3.0
RESUBSCRIBE_S = 0.5  # between tries to resubscribe while Redis is unreachable


class Gateway:
    def __init__(self, services: Services, users: ShardClient, posts: PostReader) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.services = services
        self.users = users
        self.posts = posts  # the process's post caches: dropped when a summary changes
        self.streams = Streams(services.redis, services.keys)
        self.channel = services.keys.gateway_channel(self.id)
        self.cache_channel = services.keys(*CACHE_CHANNEL)  # a user's summary changed: drop their cached posts
        self.by_user: dict[int, set[Conn]] = defaultdict(set)
        self.by_topic: dict[str, set[Conn]] = defaultdict(set)
        self.pubsub: aioredis.client.PubSub = services.redis.pubsub(ignore_subscribe_messages=True)
        self.replayer = Replayer(self.streams)
        self.sync = ShardSync(self.id, users, self.streams, self.replayer, lambda: self.by_user)
        self._tasks: list[asyncio.Task[None]] = []
        self._sub_lock = asyncio.Lock()
        self.draining = False  # shutting down: new sockets are refused (api/ws/drain.py)
        self._emptied = asyncio.Event()  # set when the last socket is detached
        self.live_counts = LiveCounts(services.pool, self.by_topic.get)
        self.feed = FeedReader(services)
        self._author_prefix = services.keys.author_channel(0)[:-1]
        self._control_tasks: set[asyncio.Task[None]] = set()

    @property
    def socket_count(self) -> int:
        return sum(len(c) for c in self.by_user.values())

    async def start(self) -> None:
        await self.pubsub.subscribe(self.channel, self.cache_channel)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read_loop()),
            loop.create_task(self.sync.run()),
            loop.create_task(self.live_counts.run()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for conns in list(self.by_user.values()):
            for conn in list(conns):
                conn.close_soon(CLOSE_GOING_AWAY, "server going away")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(REDIS_CALL_S):
                await self.pubsub.aclose()  # type: ignore[no-untyped-call]

    async def drain(self, reason: str, deadline_s: float) -> int:
        """Refuse new sockets, close the open ones with 1012 and ``reason``, and wait (at most ``deadline_s``)
        until their handlers have finished; returns how many were closed."""
        self.draining = True
        conns = [conn for cs in self.by_user.values() for conn in cs]
        for conn in conns:
            conn.close_soon(CLOSE_SERVICE_RESTART, reason)
        if self.by_user:
            self._emptied.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline_s):
                    await self._emptied.wait()
        return len(conns)

    # ------------------------------------------------------------ inbound from Redis

    async def _read_loop(self) -> None:
        while True:
            try:
                message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                OUTAGES.note("the gateway's pub/sub connection failed; resubscribing", exc, log)
                await self._reconnect()
                continue
            if message is None:
                continue
            try:
                self._dispatch(message["channel"], message["data"])
            except Exception:
                log.exception("bad pubsub message")

    async def _reconnect(self) -> None:
        """Resubscribe every ``RESUBSCRIBE_S`` until Redis answers (each failure counted in its outage, one warning
        per outage), then catch every socket up from the streams."""
        while True:
            await asyncio.sleep(RESUBSCRIBE_S)
            try:
                await self._resubscribe()
                return
            except Exception as exc:
                OUTAGES.note("the gateway's pub/sub connection failed; resubscribing", exc, log)

    async def _resubscribe(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(REDIS_CALL_S):
                await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        # A topic subscribed from now on goes to the new connection; one subscribed before is in by_topic.
        self.pubsub = self.services.redis.pubsub(ignore_subscribe_messages=True)
        async with asyncio.timeout(REDIS_CALL_S):
            await self.pubsub.subscribe(self.channel, self.cache_channel, *self.by_topic.keys())
        log.info("gateway resubscribed", extra={"fields": {"topics": len(self.by_topic)}})
        self.posts.clear()  # invalidations published meanwhile were missed
        # Anything published meanwhile is in the streams: catch every socket up (a socket whose position the
        # stream no longer holds, as after a Redis restarted empty, gets resync_required).
        for conns in list(self.by_user.values()):
            for conn in list(conns):
                self.replayer.schedule(conn)

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        name = channel.decode()
        if name == self.cache_channel:
            self.posts.forget_author(int(data))
            return
        if name == self.channel:
            batch = msgpack.unpackb(data, raw=False)
            if isinstance(batch, dict):
                self._control(batch)
                return
            for item in batch:
                conns = self.by_user.get(item[0])
                if conns:
                    frame = FrameCache(item[1], item[2], item[3], item[4] if len(item) > 4 else None)
                    for conn in list(conns):
                        if frame.event_id is None:  # live only (typing): not stored, so never replayed
                            if conn.live:
                                conn.send_now(frame.get(conn.fmt))
                        else:
                            conn.offer(frame)
            return
        conns = self.by_topic.get(name)
        if not conns:
            return
        message = msgpack.unpackb(data, raw=False)
        type_, payload = message["type"], message["data"]
        if type_ == "counts.dirty":
            self.live_counts.mark(name, payload)
            return
        if type_ == "presence":
            version = int(payload.pop("version", 0))
            for conn in list(conns):
                if conn.presence_versions.get(name, -1) < version:
                    conn.presence_versions[name] = version
                    conn.send_data("presence", payload)
            return
        if type_ == FEED_POST_EVENT and name.startswith(self._author_prefix):
            # A new post of an author who is not fanned out: live only (no id), encoded once per format.
            frames: dict[str, bytes] = {}
            for conn in list(conns):
                encoded = frames.get(conn.fmt)
                if encoded is None:
                    encoded = frames[conn.fmt] = plain_frame(None, type_, payload, conn.fmt)
                conn.send_now(encoded)
            return
        for conn in list(conns):
            conn.send_data(type_, payload)

    def _control(self, message: dict[str, Any]) -> None:
        if message.get("control") == "authors":
            # The user followed or unfollowed an author who is not fanned out: forward that author's live posts
            # to the user's sockets here, or stop.
            channel = self.services.keys.author_channel(int(message["author"]))
            for conn in list(self.by_user.get(int(message["user"]), ())):
                change = self.subscribe if message.get("on") else self.unsubscribe
                task = asyncio.get_running_loop().create_task(self._quietly(change(conn, channel)))
                self._control_tasks.add(task)
                task.add_done_callback(self._control_tasks.discard)
            return
        if message.get("control") == "revoke":
            sessions = set(message.get("sessions", ()))
            for conn in list(self.by_user.get(int(message["user"]), ())):
                if conn.session_id in sessions:
                    conn.close_soon(CLOSE_UNAUTHENTICATED, "session revoked; log in again")

    # ------------------------------------------------------------ sockets

    async def attach(self, conn: Conn) -> None:
        """Register locally first (events start buffering), then with the user's shard. A shard that does not
        answer (restarting) raises ``Unavailable`` with the socket kept here: the heartbeat registers it once
        the shard is back. When the shard refuses (``too_many_sockets``) or Redis fails, the error is raised
        and nothing of the socket stays here (a re-registration that listed it meanwhile is corrected by the
        next heartbeat)."""
        conn.on_gap = self.replayer.schedule
        self.by_user[conn.user_id].add(conn)
        unregistered: Unavailable | None = None
        try:
            try:
                await self.sync.connect(conn)
            except Unavailable as exc:
                unregistered = exc
            # Where "from now on" starts for a socket without since: read before the client sees the upgrade,
            # so that every event stored after its handshake completes is replayed or arrives live.
            async with asyncio.timeout(REDIS_CALL_S):
                conn.start_info = await self.streams.info(conn.user_id)
        except BaseException:
            self._forget(conn)
            raise
        if unregistered is not None:
            raise unregistered

    def _forget(self, conn: Conn) -> None:
        """Drop a socket from this gateway's registry (and its catch-up)."""
        self.replayer.cancel(conn)
        conns = self.by_user.get(conn.user_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.by_user[conn.user_id]
                if not self.by_user:
                    self._emptied.set()

    async def detach(self, conn: Conn) -> None:
        """Forget a closed socket here and in its shard. Never raises and never waits without a deadline."""
        self._forget(conn)
        for topic in list(conn.topics):
            try:
                await self.unsubscribe(conn, topic)
            except Exception as exc:  # Redis unreachable: the subscription goes with the pub/sub reconnect
                OUTAGES.note("unsubscribing a closed socket's topic failed", exc, log)
        await self.sync.disconnect(conn)

    async def _quietly(self, work: Any) -> None:
        try:
            async with asyncio.timeout(REDIS_CALL_S):
                await work
        except Exception as exc:
            OUTAGES.note("an author subscription change failed", exc, log)

    async def attach_feed(self, conn: Conn) -> None:
        """A socket's feed: its user's timeline kept alive (or rebuilt, so that fan-out reaches it), and the
        live channels of the authors it follows who are not fanned out. Best effort, with a deadline: a
        failure is logged and the socket goes on (the feed still reads right; only live posts of big authors
        would be missed on this socket)."""
        try:
            async with asyncio.timeout(FEED_ATTACH_S):
                await self.feed.ensure(conn.user_id)
                threshold = self.services.settings.fanout_max_followers
                authors = await feed_store.merged_followees(self.services.pool, conn.user_id, threshold)
                for author in authors:
                    if conn.closed:
                        return
                    await self.subscribe(conn, self.services.keys.author_channel(author))
        except Exception as exc:
            OUTAGES.note(
                "a socket's feed attach failed (it reads right; live posts of big authors are missed)", exc, log
            )

    async def start_stream(self, conn: Conn, since: str | None) -> bool:
        return await self.replayer.start(conn, since)

    async def subscribe(self, conn: Conn, channel: str) -> None:
        async with self._sub_lock:
            first = channel not in self.by_topic or not self.by_topic[channel]
            self.by_topic[channel].add(conn)
            conn.topics.add(channel)
            if first:
                async with asyncio.timeout(REDIS_CALL_S):
                    await self.pubsub.subscribe(channel)

    async def unsubscribe(self, conn: Conn, channel: str) -> None:
        async with self._sub_lock:
            conn.topics.discard(channel)
            conn.presence_versions.pop(channel, None)
            conns = self.by_topic.get(channel)
            if conns is None:
                return
            conns.discard(conn)
            if not conns:
                del self.by_topic[channel]
                async with asyncio.timeout(REDIS_CALL_S):
                    await self.pubsub.unsubscribe(channel)
