"""Presence transitions and the per-socket send path, without servers."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from api.ws.connection import CLOSE_SLOW, SEND_QUEUE_MAX, Conn
from api.ws.frames import FrameCache, packed_frame
from domain.presence import Presence
from storage.streams import StreamInfo

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def test_online_while_any_socket_is_open_on_any_gateway() -> None:
    p = Presence()
    assert p.add("gw1", "a", 1) is True
    v1 = p.version
    assert p.add("gw2", "b", 1) is False  # second device: no transition
    assert p.remove("gw1", "a", NOW, 2) is False
    assert p.online and p.last_seen is None
    assert p.remove("gw2", "b", NOW, 2) is True
    assert not p.online and p.last_seen == NOW
    assert p.version > v1
    assert p.remove("gw2", "b", NOW, 3) is False  # already gone, closed no later: nothing happens


def test_reregistration_replaces_a_gateways_sockets() -> None:
    p = Presence()
    p.add("gw1", "a", 1)
    assert p.replace_gateway("gw1", {"a", "c"}, NOW, 2) is False
    assert p.socket_count("gw1") == 2
    assert p.replace_gateway("gw1", set(), NOW, 3) is True  # the gateway holds none now: offline
    assert p.gateways() == []
    assert p.replace_gateway("gw3", {"z"}, NOW, 1) is True


def test_a_reregistration_taken_before_a_connect_does_not_remove_the_new_socket() -> None:
    # Before versioning, the gateway's list (taken before "b" connected) replaced the shard's view and
    # dropped "b": the user's second device was invisible, and closing "a" published a spurious offline.
    p = Presence()
    p.add("gw1", "a", 1)
    p.add("gw1", "b", 3)  # connect of b (seq 3) lands first...
    assert p.replace_gateway("gw1", {"a"}, NOW, 2) is False  # ...then the list taken at seq 2
    assert p.sockets("gw1") == {"a", "b"}
    assert p.remove("gw1", "a", NOW, 4) is False
    assert p.online


def test_a_reregistration_taken_before_a_disconnect_does_not_bring_the_socket_back() -> None:
    p = Presence()
    p.add("gw1", "a", 1)
    p.add("gw1", "b", 2)
    assert p.remove("gw1", "b", NOW, 4) is False  # b closed at seq 4...
    p.replace_gateway("gw1", {"a", "b"}, NOW, 3)  # ...a list taken at seq 3 still names it
    assert p.sockets("gw1") == {"a"}
    assert p.remove("gw1", "a", NOW, 5) is True  # the real last socket: offline, once
    assert not p.online


def test_operations_older_than_an_applied_reregistration_are_ignored() -> None:
    p = Presence()
    assert p.replace_gateway("gw1", {"a"}, NOW, 10) is True
    assert p.add("gw1", "x", 7) is False  # a connect covered by the list (x closed before it was taken)
    assert p.sockets("gw1") == {"a"}
    assert p.remove("gw1", "a", NOW, 8) is False  # a stale remove: the list at 10 still had "a"
    assert p.online
    assert p.replace_gateway("gw1", set(), NOW, 9) is False  # an older list arriving late
    assert p.online


def test_a_late_connect_of_a_closed_socket_never_revives_it() -> None:
    p = Presence()
    p.add("gw1", "a", 1)
    assert p.remove("gw1", "b", NOW, 3) is False  # b's disconnect overtook its connect
    assert p.add("gw1", "b", 2) is False
    assert p.sockets("gw1") == {"a"}


def test_a_close_the_shard_never_heard_of_confirms_offline_with_its_time() -> None:
    # A restarted shard knows nothing of the socket; subscribers last heard "online" from the old one.
    p = Presence(last_seen=NOW - dt.timedelta(days=1))
    assert p.remove("gw1", "a", NOW, 5) is True
    assert p.last_seen == NOW
    assert p.remove("gw1", "a", NOW, 6) is False  # the same close again: nothing new
    q = Presence()
    assert q.replace_gateway("gw1", set(), NOW, 3, closed_at=NOW) is True  # re-registration with the close
    assert q.last_seen == NOW and not q.online
    assert q.replace_gateway("gw1", set(), NOW, 4, closed_at=NOW) is False


def test_an_expired_gateway_is_forgotten_with_its_sequence() -> None:
    p = Presence()
    p.add("gw1", "a", 100)
    assert p.forget_gateway("gw1", NOW) is True
    assert not p.online and p.last_seen == NOW
    assert p.add("gw1", "c", 1) is True  # the gateway came back: its numbers count again


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


class _ResetSocket(_StuckSocket):
    """A transport whose peer vanished: sends block until the reset, then fail (as uvicorn's do)."""

    def __init__(self) -> None:
        super().__init__()
        self.reset = asyncio.Event()

    async def send_text(self, _data: str) -> None:
        await self.reset.wait()
        raise ConnectionResetError

    async def send_bytes(self, _data: bytes) -> None:
        await self.send_text("")


async def test_a_replay_blocked_on_a_full_queue_ends_as_soon_as_the_peer_resets() -> None:
    # Before the fix the replay waited on queue.put for ever once the writer had died.
    sock: Any = _ResetSocket()
    conn = Conn(sock, 1, 1, "json", 0)
    conn.start_writer()
    replay = asyncio.create_task(conn.replay([_frame(n + 1) for n in range(SEND_QUEUE_MAX * 3)]))
    await asyncio.sleep(0.01)
    assert not replay.done() and conn.queue.full()
    sock.reset.set()
    await asyncio.wait_for(replay, timeout=1)
    assert conn.closed and conn.closed_at is not None


async def test_a_presence_snapshot_older_than_a_sent_transition_is_dropped() -> None:
    conn = Conn(_StuckSocket(), 1, 1, "json", 0)  # type: ignore[arg-type]
    channel = "i9:topic:presence:7"
    conn.presence_versions[channel] = 20  # a live transition at version 20 already went out
    assert conn.presence_snapshot(channel, 15) is False
    assert conn.presence_snapshot(channel, 20) is False  # the same state again
    assert conn.presence_snapshot(channel, 25) is True
    assert conn.presence_versions[channel] == 25
    assert conn.presence_snapshot("i9:topic:presence:8", 1) is True  # nothing live yet: the snapshot goes


def _info(**kw: Any) -> StreamInfo:
    return StreamInfo(exists=True, **kw)


def test_which_since_values_were_lost() -> None:
    kept = _info(first="100-0", last="300-0")
    assert not kept.is_lost("100-0") and not kept.is_lost("200-5") and not kept.is_lost("300-0")
    assert kept.is_lost("99-0")  # before the first entry: not in this stream (trimmed, or an older one)
    assert kept.is_lost("301-0")  # after the last entry: the stream lost its tail
    assert not kept.is_lost("0-1") and not kept.is_lost("0-0")  # "everything", never trimmed
    trimmed = _info(first="100-0", last="300-0", trimmed=True)
    assert trimmed.is_lost("0-1") and trimmed.is_lost("50-0") and not trimmed.is_lost("150-0")
    deleted = _info(first="100-0", last="300-0", max_deleted="250-0")
    assert deleted.is_lost("200-0") and not deleted.is_lost("250-0") and deleted.is_lost("0-1")
    missing = StreamInfo(exists=False)
    assert missing.is_lost("200-0")  # Redis lost the stream
    assert not missing.is_lost("0-1")  # nothing was ever there
    assert missing.tail == "0-0"
    assert _info(first=None, last=None, trimmed=True).is_lost("200-0")  # emptied
