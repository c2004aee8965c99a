"""A socket's start and a catch-up asked for meanwhile (api/ws/replay.py), on a real Redis stream.

A socket is listed on its gateway before it starts (so that a shard restart re-registers it), and a
re-registration asks every listed socket to catch up. Before the fix, a catch-up that ran while the socket was
still starting read the stream from its very beginning (the socket had no position yet), and the start then set
the position back to where it began: the events stored meanwhile went out twice, and older ones once too many.
Seen black-box as a flake of tests/api/test_realtime_faults.py (a socket opened while its shard restarts).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import msgpack
import orjson
import redis.asyncio as aioredis

from api.ws.connection import Conn
from api.ws.replay import Replayer
from storage.redis import Keys
from storage.streams import Streams
from tests.conftest import REDIS_URL


class _Socket:
    client_state = None


def _sent(conn: Conn) -> list[dict[str, Any]]:
    frames = []
    while not conn.queue.empty():
        frame = conn.queue.get_nowait()
        assert frame is not None
        frames.append(orjson.loads(frame))
    return frames


async def test_a_catch_up_asked_for_while_a_socket_starts_waits_for_the_start(redis_prefix: str) -> None:
    client = aioredis.from_url(REDIS_URL)
    streams = Streams(client, Keys(redis_prefix))
    user = random.randrange(10**12, 10**13)
    outbox = random.randrange(10**12, 10**13)
    try:
        await streams.append([(outbox, [user], "test.event", msgpack.packb({"n": "before"}))])
        conn = Conn(_Socket(), user, 1, "json", 0)  # type: ignore[arg-type]
        conn.start_info = await streams.info(user)  # where "from now on" begins for this socket
        stored = await streams.append(
            [(outbox + 1 + n, [user], "test.event", msgpack.packb({"n": n})) for n in range(3)]
        )
        replayer = Replayer(streams)
        replayer.schedule(conn)  # a shard re-registration lists the socket before it has started...
        await asyncio.sleep(0.2)  # ...and the socket's handler is still between listing it and starting it
        assert await replayer.start(conn, None)
        assert conn.live
        for _ in range(500):  # the catch-up asked for meanwhile runs once the socket has started
            if replayer.running == 0:
                break
            await asyncio.sleep(0.01)
        assert replayer.running == 0
        frames = _sent(conn)
        assert [f["id"] for f in frames] == [event[user].id for event in stored]  # each once, nothing older
        assert [f["data"]["n"] for f in frames] == [0, 1, 2]

        # Once started, a catch-up runs at once (and finds nothing new here).
        replayer.schedule(conn)
        assert replayer.running == 1
        for _ in range(500):
            if replayer.running == 0:
                break
            await asyncio.sleep(0.01)
        assert _sent(conn) == [] and conn.live
    finally:
        await client.aclose()
