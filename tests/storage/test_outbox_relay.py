"""The outbox relay against real PostgreSQL and Redis: a poison row is retried with backoff and parked as dead
while the rows behind it are delivered; no row lock is held while publishing; a retried row lands once.

What reaches gateways is read where gateways read it: on a gateway's channel, for users routed to it
(storage/routes.py). A publish that hangs is a Redis reply held back by a TCP proxy (tests/support.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgpack
import pytest
import redis.asyncio as aioredis

from actors.runtime.delivery import Delivery, OutboxEvent
from actors.runtime.services import Services
from storage import db
from storage import outbox as outbox_store
from storage import redis as rstore
from storage import streams as streams_store
from tests.storage.fresh_db import fresh_database, private_services
from tests.support import HeldProxy, wait_until

POISON_USER = 666


GATEWAY = "relay-test-gateway"


class Gateway:
    """A gateway's channel: the users in ``users`` are routed to it; ``items`` is what it received."""

    def __init__(self, services: Services, users: list[int]) -> None:
        self.services = services
        self.users = users
        self.items: list[list[Any]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Gateway:
        routes = Delivery(self.services).routes
        await routes.mirror_all({u: [GATEWAY] for u in self.users})
        self.pubsub = self.services.redis.pubsub()
        await self.pubsub.subscribe(self.services.keys.gateway_channel(GATEWAY))
        self._task = asyncio.get_running_loop().create_task(self._read())
        return self

    async def _read(self) -> None:
        async for message in self.pubsub.listen():
            if message["type"] == "message":
                self.items.extend(msgpack.unpackb(message["data"], raw=False))

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await self.pubsub.aclose()
        await self.services.redis.delete(*(self.services.keys.route(u) for u in self.users))


@pytest.fixture
async def held(services: Services) -> AsyncIterator[tuple[HeldProxy, Services]]:
    """Services whose Redis is reached through a proxy that can hold its replies."""
    async with HeldProxy("127.0.0.1", 6379) as proxy:
        client = rstore.create_client(f"redis://127.0.0.1:{proxy.port}/0", max_connections=8)
        await client.ping()  # connected (the handshake's replies are not held) and the scripts loaded
        await Delivery(services).routes.deliver([])
        try:
            yield proxy, dataclasses.replace(services, redis=client)
        finally:
            await client.aclose()


@pytest.fixture(scope="module")
async def relay_dsn() -> AsyncIterator[str]:
    async with fresh_database("i9relay") as dsn:
        yield dsn


@pytest.fixture
async def services(relay_dsn: str) -> AsyncIterator[Services]:
    async with private_services(relay_dsn) as made:
        await made.pool.execute("TRUNCATE outbox")
        yield made


async def stage(services: Services, delivery: Delivery, recipients: list[int], n: int) -> OutboxEvent:
    """Commit one outbox row and leave it unsent, as a crash right after the commit would."""
    event = OutboxEvent.make(recipients, "test.event", {"n": n})
    async with db.transaction(services.pool) as conn:
        await delivery.stage(conn, [event])
    return event


async def stream_ids(services: Services, user_id: int) -> list[tuple[str, int]]:
    entries = await streams_store.Streams(services.redis, services.keys).read_after(user_id, "0-0")
    return [(e.id, msgpack.unpackb(e.data)["n"]) for e in entries]


async def outbox_row(services: Services, event_id: int) -> asyncpg.Record:
    row = await services.pool.fetchrow("SELECT *, next_attempt_at - now() AS wait FROM outbox WHERE id = $1", event_id)
    assert row is not None
    return row


async def make_due(services: Services, event_id: int) -> None:
    """Let the backoff of one row run out now (instead of waiting for it)."""
    await services.pool.execute("UPDATE outbox SET next_attempt_at = now() WHERE id = $1", event_id)


async def test_a_poison_row_is_retried_with_backoff_then_parked_while_the_rows_behind_it_are_delivered(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    delivery = Delivery(services)
    # A recipient whose stream key holds something else: every append of the event fails (WRONGTYPE).
    await services.redis.set(services.keys.events(POISON_USER), b"not a stream")
    poison = await stage(services, delivery, [POISON_USER], 0)  # oldest: first in line
    good = [await stage(services, delivery, [1, 2], n) for n in (1, 2, 3)]

    async with Gateway(services, [1, 2, POISON_USER]) as gateway:
        assert await delivery.relay_once(older_than_s=0.0) == 3

        async def all_pushed() -> bool:
            return len(gateway.items) >= 6

        await wait_until(all_pushed)
    for user_id in (1, 2):
        assert [n for _, n in await stream_ids(services, user_id)] == [1, 2, 3]
    unsent = await services.pool.fetchval(
        "SELECT array_agg(id ORDER BY id) FROM outbox WHERE sent_at IS NULL", column=0
    )
    assert unsent == [poison.id]
    assert sorted(item[0] for item in gateway.items) == [1, 1, 1, 2, 2, 2]  # the poison event went nowhere

    row = await outbox_row(services, poison.id)
    assert row["attempts"] == 1
    assert "WRONGTYPE" in row["last_error"]
    assert row["dead_at"] is None
    assert row["wait"].total_seconds() >= outbox_store.BACKOFF_BASE_S / 2 - 0.5  # backed off, not retried at once
    assert await delivery.relay_once(older_than_s=0.0) == 0  # still backing off: not claimed again

    for attempt in (2, 3):
        await make_due(services, poison.id)
        with caplog.at_level(logging.WARNING, logger="i9lyfe.delivery"):
            assert await delivery.relay_once(older_than_s=0.0, max_attempts=3) == 0
        row = await outbox_row(services, poison.id)
        assert row["attempts"] == attempt
        assert (row["dead_at"] is not None) == (attempt == 3)
    parked = [r for r in caplog.records if r.levelno == logging.ERROR and "dead" in r.getMessage()]
    assert len(parked) == 1
    fields: dict[str, Any] = parked[0].fields  # type: ignore[attr-defined]
    assert fields["outbox_id"] == poison.id
    assert fields["type"] == "test.event"
    assert fields["attempts"] == 3
    assert "WRONGTYPE" in fields["error"]

    await make_due(services, poison.id)
    assert await delivery.relay_once(older_than_s=0.0, max_attempts=3) == 0  # dead rows are left alone
    assert (await outbox_row(services, poison.id))["attempts"] == 3
    assert all(r["sent_at"] is not None for r in [await outbox_row(services, e.id) for e in good])


async def test_no_row_lock_is_held_while_publishing(services: Services, held: tuple[HeldProxy, Services]) -> None:
    proxy, slow = held
    delivery = Delivery(slow)
    event = await stage(services, delivery, [7], 0)

    proxy.hold()
    relay = asyncio.get_running_loop().create_task(delivery.relay_once(older_than_s=0.0))
    try:
        await asyncio.wait_for(proxy.requests_seen.wait(), timeout=10)  # the relay is inside the publish now
        async with db.transaction(services.pool) as conn:
            locked = await conn.fetchrow("SELECT id FROM outbox WHERE id = $1 FOR UPDATE NOWAIT", event.id)
        assert locked is not None
        # The claim is a lease instead: another relay meanwhile leaves the row alone.
        assert await Delivery(services).relay_once(older_than_s=0.0) == 0
    finally:
        proxy.release()
    assert await asyncio.wait_for(relay, timeout=10) == 1
    assert (await outbox_row(services, event.id))["sent_at"] is not None
    assert [n for _, n in await stream_ids(services, 7)] == [0]


async def test_a_row_retried_after_a_publish_ran_out_of_time_lands_in_the_stream_once(
    services: Services, held: tuple[HeldProxy, Services]
) -> None:
    proxy, slow = held
    delivery = Delivery(slow)
    event = await stage(services, delivery, [8, 9], 0)

    async with Gateway(services, [8, 9]) as gateway:
        proxy.hold()  # the script runs in Redis, its reply never comes: the publish outlives its share of the lease
        assert await delivery.relay_once(older_than_s=0.0, lease_s=1.0) == 0
        row = await outbox_row(services, event.id)
        assert row["sent_at"] is None
        assert row["attempts"] == 1
        assert "Timeout" in row["last_error"]
        first = {u: await stream_ids(services, u) for u in (8, 9)}
        assert all(len(entries) == 1 for entries in first.values())  # the append itself went through
        proxy.release()

        await make_due(services, event.id)
        assert await Delivery(services).relay_once(older_than_s=0.0) == 1

        async def both_publishes_in() -> bool:
            return len(gateway.items) >= 4

        await wait_until(both_publishes_in)
    assert {u: await stream_ids(services, u) for u in (8, 9)} == first  # no duplicate entries
    pushed_ids = {(item[0], item[1]) for item in gateway.items}
    assert pushed_ids == {(u, entries[0][0]) for u, entries in first.items()}  # the retry pushed the same ids
    assert (await outbox_row(services, event.id))["sent_at"] is not None


async def test_a_row_older_than_the_retry_window_is_parked_not_published(services: Services) -> None:
    delivery = Delivery(services)
    event = await stage(services, delivery, [10], 0)
    await services.pool.execute(
        "UPDATE outbox SET created_at = now() - make_interval(secs => $2) WHERE id = $1",
        event.id,
        outbox_store.RETRY_WINDOW_S + 60.0,
    )
    assert await delivery.relay_once(older_than_s=0.0) == 0
    row = await outbox_row(services, event.id)
    assert row["dead_at"] is not None and row["sent_at"] is None
    assert await stream_ids(services, 10) == []


def test_the_append_dedupe_outlives_every_retry_of_a_row() -> None:
    schedule = [outbox_store.backoff_s(n, jitter=1.0) for n in range(1, outbox_store.MAX_ATTEMPTS)]
    assert schedule[:3] == [
        outbox_store.BACKOFF_BASE_S,
        outbox_store.BACKOFF_BASE_S * 2,
        outbox_store.BACKOFF_BASE_S * 4,
    ]
    assert max(schedule) == outbox_store.BACKOFF_CAP_S
    assert outbox_store.backoff_s(5, jitter=0.0) == outbox_store.backoff_s(5, jitter=1.0) / 2
    # Relays running normally use up the attempts well inside the retry window ...
    assert sum(schedule) + outbox_store.MAX_ATTEMPTS * outbox_store.LEASE_S <= outbox_store.MAX_RETRY_SPAN_S
    assert outbox_store.RETRY_WINDOW_S >= outbox_store.MAX_RETRY_SPAN_S
    # ... and no row is published after its window plus one lease, while the dedupe hash outlives both.
    assert streams_store.DEDUPE_TTL_S > outbox_store.RETRY_WINDOW_S + outbox_store.LEASE_S


async def test_an_event_with_one_corrupt_recipient_stream_writes_nothing_so_retries_never_duplicate(
    services: Services,
) -> None:
    streams = streams_store.Streams(services.redis, services.keys)
    good, bad = 4242, POISON_USER
    await services.redis.set(streams.stream_key(bad), b"not a stream")
    with pytest.raises(Exception, match="WRONGTYPE"):
        await streams.append([(987654321, [good, bad], "test.event", msgpack.packb({"n": 1}))])
    with pytest.raises(Exception, match="WRONGTYPE"):
        await streams.append([(987654321, [good, bad], "test.event", msgpack.packb({"n": 1}))])
    assert await stream_ids(services, good) == []  # before the check, each try appended to the good stream
    await services.redis.delete(streams.stream_key(bad), streams.stream_key(good))


async def test_attempts_that_failed_because_redis_was_down_are_given_back(services: Services) -> None:
    """An outage does not use a row up: its attempts are refunded (never parked as dead for it), it waits
    OUTAGE_WAIT_S, and it is delivered once Redis answers again."""
    down = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)  # nothing listens there
    try:
        broken = Delivery(dataclasses.replace(services, redis=down))
        event = await stage(services, broken, [7], 1)
        for _ in range(3):
            await make_due(services, event.id)
            assert await broken.relay_once(older_than_s=0.0, max_attempts=2) == 0
            row = await outbox_row(services, event.id)
            assert (row["attempts"], row["dead_at"]) == (0, None), row
            assert row["wait"].total_seconds() > outbox_store.OUTAGE_WAIT_S - 5
    finally:
        await down.aclose()
    await make_due(services, event.id)
    assert await Delivery(services).relay_once(older_than_s=0.0) == 1
    assert [n for _, n in await stream_ids(services, 7)] == [1]
