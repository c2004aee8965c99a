"""Keeping the UserShards' view of this gateway's sockets right: versioned registration and the heartbeat.

Every socket add and remove this gateway sends carries the next number of one per-gateway sequence; a
re-registration carries the number it was taken at, so the shard can tell which of a late add, a late remove
and a re-registration is newest (domain/presence.py). A disconnect that cannot reach its shard (it is
restarting) is remembered with its close time and sent with the next re-registration, so the user still goes
offline with a ``last_seen``.

Every ``HEARTBEAT_S`` each shard is told this gateway is alive and how many sockets it holds there; a restarted
shard (new epoch), a count mismatch or a remembered disconnect triggers a re-registration, followed by a
catch-up of every socket it covered. The same heartbeat compares each socket's position with its stream's tail
(one pipelined round trip) and catches up a socket left behind by a dropped push. Nothing here is awaited
without a deadline, and catch-ups run as their own tasks.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable

from actors.runtime.client import ShardClient
from api.ws.connection import Conn
from api.ws.replay import Replayer
from domain.errors import DomainError
from domain.ops import Connect, Disconnect
from storage.outage import OUTAGES
from storage.streams import Streams, parse_stream_id

log = logging.getLogger("i9lyfe.gateway")

HEARTBEAT_S = 2.0
SHARD_CALL_S = 5.0
TAIL_CHECK_BATCH = 500
LAG_GRACE_MS = 1_000  # a tail younger than this may still be on its way through the live path


class ShardSync:
    def __init__(
        self,
        gateway_id: str,
        users: ShardClient,
        streams: Streams,
        replayer: Replayer,
        sockets: Callable[[], dict[int, set[Conn]]],
    ) -> None:
        self.gateway_id = gateway_id
        self.users = users
        self.streams = streams
        self.replayer = replayer
        self._sockets = sockets
        self._seq = itertools.count(1)
        self.epochs: dict[int, str] = {}
        self.departed: dict[int, float] = {}  # user id -> close time of a disconnect that may not have landed
        self.registrations = 0

    def next_seq(self) -> int:
        return next(self._seq)

    # ------------------------------------------------------------ socket adds and removes

    async def connect(self, conn: Conn) -> None:
        """Register a socket with its shard; a refusal (``too_many_sockets``) or a shard that does not answer
        raises, and a remembered disconnect of the user is kept for the next re-registration."""
        departed = self.departed.pop(conn.user_id, None)
        try:
            op = Connect(user_id=conn.user_id, gateway=self.gateway_id, socket_id=conn.id, seq=self.next_seq())
            await self.users.call(op, deadline_s=SHARD_CALL_S)
        except BaseException:
            if departed is not None:
                self.departed.setdefault(conn.user_id, departed)
            raise

    async def disconnect(self, conn: Conn) -> None:
        closed_at = conn.closed_at or time.time()
        seq = self.next_seq()
        try:
            op = Disconnect(
                user_id=conn.user_id, gateway=self.gateway_id, socket_id=conn.id, seq=seq, closed_at=closed_at
            )
            await self.users.call(op, deadline_s=SHARD_CALL_S)
        except DomainError as exc:  # the shard is restarting: the next heartbeat re-registers with this close
            self.departed[conn.user_id] = closed_at
            OUTAGES.note("a socket's disconnect is not registered yet (the next heartbeat sends it)", exc, log)

    # ------------------------------------------------------------ heartbeat

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.gather(
                *(self._heartbeat(k) for k in range(len(self.users.shards))),
                self._check_tails(),
                return_exceptions=True,
            )
            await asyncio.sleep(max(0.1, HEARTBEAT_S - (time.monotonic() - started)))

    def _snapshot(self, k: int) -> tuple[int, dict[int, list[str]], dict[int, float]]:
        """This gateway's sockets in shard ``k`` and its unconfirmed closes there, as of a new sequence number."""
        seq = self.next_seq()
        sockets = {
            uid: [c.id for c in conns]
            for uid, conns in self._sockets().items()
            if conns and self.users.shard_for(uid) == k
        }
        departed = {uid: t for uid, t in self.departed.items() if self.users.shard_for(uid) == k}
        return seq, sockets, departed

    async def _heartbeat(self, k: int) -> None:
        _, local, departed = self._snapshot(k)
        count = sum(len(v) for v in local.values())
        try:
            async with asyncio.timeout(SHARD_CALL_S):
                reply = await self.users.heartbeat(k, self.gateway_id, count)
        except Exception as exc:
            OUTAGES.note("a shard heartbeat failed", exc, log)
            return
        previous = self.epochs.get(k)
        restarted = previous is not None and previous != reply["epoch"]
        if restarted or reply["known"] != count or departed:
            await self.register(k, restarted)
        self.epochs[k] = reply["epoch"]

    async def register(self, k: int, restarted: bool = False) -> None:
        seq, local, departed = self._snapshot(k)
        try:
            async with asyncio.timeout(SHARD_CALL_S):
                await self.users.register(k, self.gateway_id, local, seq, departed)
        except Exception as exc:
            OUTAGES.note("a shard re-registration failed (the next heartbeat tries again)", exc, log)
            return
        self.registrations += 1
        for uid, closed_at in departed.items():
            if self.departed.get(uid) == closed_at:
                del self.departed[uid]
        log.info(
            "re-registered with shard",
            extra={"fields": {"shard": k, "sockets": sum(len(v) for v in local.values()), "restarted": restarted}},
        )
        # Events pushed while the shard did not know these sockets reached nobody: read them from the streams.
        by_user = self._sockets()
        for uid in local:
            for conn in list(by_user.get(uid, ())):
                self.replayer.schedule(conn)

    async def _check_tails(self) -> None:
        """Catch up every live socket whose stream has an event it did not get (a dropped push)."""
        conns = [c for cs in self._sockets().values() for c in cs if c.live and not c.closed]
        users = sorted({c.user_id for c in conns})
        tails: dict[int, tuple[int, int]] = {}
        now_ms = 0
        for i in range(0, len(users), TAIL_CHECK_BATCH):
            chunk = users[i : i + TAIL_CHECK_BATCH]
            async with asyncio.timeout(SHARD_CALL_S):
                got, now_ms = await self.streams.tails(chunk)
            tails.update({uid: parse_stream_id(tail) for uid, tail in got.items()})
        for conn in conns:
            tail = tails.get(conn.user_id, (0, 0))
            if tail == conn.last:
                continue
            behind = tail > conn.last and now_ms - tail[0] >= LAG_GRACE_MS
            if behind or tail < conn.last:  # ahead of the tail: the stream lost entries
                self.replayer.schedule(conn)
