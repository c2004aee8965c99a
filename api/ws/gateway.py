"""The gateway of one api process: its id, its sockets, and its one Redis pub/sub connection.

It subscribes once to ``gw:<id>`` (events routed here by the UserShards) and to topic channels
(``topic:presence:<user>``, ``topic:post:<id>``) only while a local socket needs them (reference counted).
Every 2 s it tells each UserShard it is alive and how many sockets it holds there; when a shard restarted
(new epoch) or lost count, the gateway re-registers its sockets and replays them from their streams, so no
stored event is missed.
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

from actors.client import ShardClient
from actors.context import Services
from api.ws.connection import Conn
from api.ws.frames import FrameCache
from storage.streams import Streams

log = logging.getLogger("i9lyfe.gateway")

HEARTBEAT_S = 2.0
REPLAY_PAGE = 500


class Gateway:
    def __init__(self, services: Services, users: ShardClient, handles: list[Any]) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.services = services
        self.users = users
        self.handles = handles
        self.streams = Streams(services.redis, services.keys)
        self.channel = services.keys.gateway_channel(self.id)
        self.by_user: dict[int, set[Conn]] = defaultdict(set)
        self.by_topic: dict[str, set[Conn]] = defaultdict(set)
        self.epochs: dict[int, str] = {}
        self.pubsub: aioredis.client.PubSub = services.redis.pubsub(ignore_subscribe_messages=True)
        self._tasks: list[asyncio.Task[None]] = []
        self._bg: set[asyncio.Task[None]] = set()
        self._catching_up: set[str] = set()
        self._sub_lock = asyncio.Lock()

    @property
    def socket_count(self) -> int:
        return sum(len(c) for c in self.by_user.values())

    async def start(self) -> None:
        await self.pubsub.subscribe(self.channel)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read_loop()), loop.create_task(self._heartbeat_loop())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for conns in list(self.by_user.values()):
            for conn in list(conns):
                conn.close_soon(1001, "server going away")
        with contextlib.suppress(Exception):
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------ inbound from Redis

    async def _read_loop(self) -> None:
        while True:
            try:
                message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pubsub read failed; resubscribing")
                await asyncio.sleep(0.5)
                await self._resubscribe()
                continue
            if message is None:
                continue
            try:
                self._dispatch(message["channel"], message["data"])
            except Exception:
                log.exception("bad pubsub message")

    async def _resubscribe(self) -> None:
        with contextlib.suppress(Exception):
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        self.pubsub = self.services.redis.pubsub(ignore_subscribe_messages=True)
        await self.pubsub.subscribe(self.channel, *self.by_topic.keys())
        # Anything published meanwhile is in the streams: replay every socket.
        for conns in list(self.by_user.values()):
            for conn in list(conns):
                asyncio.get_running_loop().create_task(self.catch_up(conn))

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        name = channel.decode()
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
                        conn.offer(frame)
            return
        conns = self.by_topic.get(name)
        if not conns:
            return
        message = msgpack.unpackb(data, raw=False)
        type_, payload = message["type"], message["data"]
        if type_ == "presence":
            version = int(payload.pop("version", 0))
            for conn in list(conns):
                if conn.presence_versions.get(name, -1) < version:
                    conn.presence_versions[name] = version
                    conn.send_data("presence", payload)
            return
        for conn in list(conns):
            conn.send_data(type_, payload)

    def _control(self, message: dict[str, Any]) -> None:
        if message.get("control") == "revoke":
            sessions = set(message.get("sessions", ()))
            for conn in list(self.by_user.get(int(message["user"]), ())):
                if conn.session_id in sessions:
                    conn.close_soon(4401, "session revoked; log in again")

    # ------------------------------------------------------------ sockets

    async def attach(self, conn: Conn) -> None:
        """Register locally first (events start buffering), then with the user's shard."""
        conn.on_gap = self._schedule_catch_up
        self.by_user[conn.user_id].add(conn)
        await self.users.call("connect", conn.user_id, self.id, conn.id)

    async def detach(self, conn: Conn) -> None:
        conns = self.by_user.get(conn.user_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.by_user[conn.user_id]
        for topic in list(conn.topics):
            await self.unsubscribe(conn, topic)
        try:
            await self.users.call("disconnect", conn.user_id, self.id, conn.id)
        except Exception as exc:  # the shard is restarting: the next heartbeat re-syncs it
            log.warning("disconnect not registered", extra={"fields": {"error": repr(exc)}})

    async def start_stream(self, conn: Conn, since: str | None) -> bool:
        """Replay from ``since`` (or start at the stream's end) and go live. False when ``since`` is too old."""
        lost = False
        if since is None:
            conn.last = _position(await self.streams.last_id(conn.user_id))
        else:
            now_ms = int(await self._redis_time_ms())
            lost = await self.streams.is_lost(conn.user_id, since, now_ms)
            conn.last = _position(await self.streams.last_id(conn.user_id)) if lost else _position(since)
        if lost:  # first frame, before anything live that arrived meanwhile
            oldest = await self.streams.first_id(conn.user_id)
            conn.send_data(
                "resync_required", {"reason": "since is older than the retained events", "oldest_id": oldest}
            )
        else:
            await self._replay(conn)
        conn.go_live()
        return not lost

    def _schedule_catch_up(self, conn: Conn) -> None:
        if conn.id in self._catching_up:
            return
        self._catching_up.add(conn.id)

        task = asyncio.get_running_loop().create_task(self.catch_up(conn))
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def catch_up(self, conn: Conn) -> None:
        """After a shard restart or a pub/sub reconnect: send what the live path may have missed."""
        if conn.closed:
            self._catching_up.discard(conn.id)
            return
        conn.pause()
        try:
            await self._replay(conn)
        finally:
            self._catching_up.discard(conn.id)  # before go_live, which may find another gap and ask again
            conn.go_live()

    async def _replay(self, conn: Conn) -> None:
        while not conn.closed:
            after = f"{conn.last[0]}-{conn.last[1]}"
            page = await self.streams.read_after(conn.user_id, after, REPLAY_PAGE)
            if not page:
                return
            await conn.replay([FrameCache(e.id, e.type, e.data) for e in page])
            if len(page) < REPLAY_PAGE:
                return

    async def _redis_time_ms(self) -> int:
        seconds, micros = await self.services.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def subscribe(self, conn: Conn, channel: str) -> None:
        async with self._sub_lock:
            first = channel not in self.by_topic or not self.by_topic[channel]
            self.by_topic[channel].add(conn)
            conn.topics.add(channel)
            if first:
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
                await self.pubsub.unsubscribe(channel)

    # ------------------------------------------------------------ shard sync

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.gather(*(self._heartbeat(k) for k in range(len(self.handles))), return_exceptions=True)
            await asyncio.sleep(HEARTBEAT_S)

    def _sockets_in_shard(self, k: int) -> dict[int, list[str]]:
        return {
            uid: [c.id for c in conns]
            for uid, conns in self.by_user.items()
            if conns and self.users.shard_for(uid) == k
        }

    async def _heartbeat(self, k: int) -> None:
        local = self._sockets_in_shard(k)
        count = sum(len(v) for v in local.values())
        try:
            reply = await asyncio.wait_for(self.handles[k].heartbeat.remote(self.id, count), timeout=5)
        except Exception as exc:
            log.warning("shard heartbeat failed", extra={"fields": {"shard": k, "error": repr(exc)}})
            return
        previous = self.epochs.get(k)
        restarted = previous is not None and previous != reply["epoch"]
        if restarted or reply["known"] != count:
            local = self._sockets_in_shard(k)
            await self.handles[k].register.remote(self.id, local)
            log.info(
                "re-registered with shard", extra={"fields": {"shard": k, "sockets": count, "restarted": restarted}}
            )
        self.epochs[k] = reply["epoch"]
        if restarted:
            for uid in local:
                for conn in list(self.by_user.get(uid, ())):
                    await self.catch_up(conn)


def _position(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)
