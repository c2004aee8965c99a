"""Presence transitions and the per-socket send path, without servers."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from actors.presence import Presence
from api.ws.connection import CLOSE_SLOW, SEND_QUEUE_MAX, Conn
from api.ws.frames import FrameCache, packed_frame

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def test_online_while_any_socket_is_open_on_any_gateway() -> None:
    p = Presence()
    assert p.add("gw1", "a") is True
    v1 = p.version
    assert p.add("gw2", "b") is False  # second device: no transition
    assert p.remove("gw1", "a", NOW) is False
    assert p.online and p.last_seen is None
    assert p.remove("gw2", "b", NOW) is True
    assert not p.online and p.last_seen == NOW
    assert p.version > v1
    assert p.remove("gw2", "b", NOW) is False  # unknown socket: nothing happens


def test_reregistration_replaces_a_gateways_sockets() -> None:
    p = Presence()
    p.add("gw1", "a")
    assert p.replace_gateway("gw1", {"a", "c"}, NOW) is False
    assert p.socket_count("gw1") == 2
    assert p.replace_gateway("gw1", set(), NOW) is True  # the gateway died: offline
    assert p.gateways() == []
    assert p.replace_gateway("gw3", {"z"}, NOW) is True


class _StuckSocket:
    """A transport whose sends never complete (a client that stopped reading)."""

    def __init__(self) -> None:
        self.closed_with: int | None = None
        self.client_state = None

    async def send_text(self, _data: str) -> None:
        await asyncio.Event().wait()

    async def send_bytes(self, _data: bytes) -> None:
        await asyncio.Event().wait()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed_with = code


def _frame(n: int) -> FrameCache:
    return FrameCache(f"1000-{n}", "test.event", b"\x80")


async def test_a_socket_that_cannot_keep_up_is_closed_with_4008() -> None:
    sock: Any = _StuckSocket()
    conn = Conn(sock, 1, 1, "json", 0)
    conn.start_writer()
    conn.go_live()
    for n in range(SEND_QUEUE_MAX + 5):
        conn.offer(_frame(n + 1))
    await asyncio.sleep(0)
    assert conn.closed
    assert conn.close_code == CLOSE_SLOW


async def test_events_are_sent_once_in_order_across_replay_and_live() -> None:
    sock: Any = _StuckSocket()
    conn = Conn(sock, 1, 1, "msgpack", 0)
    conn.offer(_frame(3))  # live events arriving during the replay are held back
    conn.offer(_frame(2))
    await conn.replay([_frame(1), _frame(2)])
    conn.go_live()
    conn.offer(_frame(3))  # a retried push: already sent
    sent = []
    while not conn.queue.empty():
        sent.append(conn.queue.get_nowait())
    assert sent == [packed_frame(f"1000-{n}", "test.event", b"\x80") for n in (1, 2, 3)]


async def test_a_live_event_that_overtook_an_earlier_one_waits_for_the_gap_to_be_read() -> None:
    sock: Any = _StuckSocket()
    conn = Conn(sock, 1, 1, "json", 0)
    gaps: list[Conn] = []
    conn.on_gap = gaps.append
    conn.last = (1000, 1)
    conn.live = True
    conn.offer(FrameCache("1000-3", "test.event", b"\x80", prev="1000-2"))  # 1000-2 has not arrived
    assert gaps == [conn]
    assert conn.queue.empty()
    assert not conn.live
    # The gateway reads the gap from the stream, then goes live again: both leave in stream order.
    await conn.replay([FrameCache("1000-2", "test.event", b"\x80"), FrameCache("1000-3", "test.event", b"\x80")])
    conn.go_live()
    assert conn.queue.qsize() == 2
    assert conn.last == (1000, 3)
    conn.offer(FrameCache("1000-4", "test.event", b"\x80", prev="1000-3"))  # in order: straight out
    assert conn.queue.qsize() == 3
    assert gaps == [conn]
