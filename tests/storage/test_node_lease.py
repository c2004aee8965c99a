"""Node numbers of the id generator are leased from Redis (SET NX with a TTL, renewed, released): two live
processes never mint with the same node, and a process that lost its lease stops minting with it."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis as sync_redis
import redis.asyncio as aioredis

from actors.runtime.services import Services
from storage import redis as rstore
from storage.config import Settings
from storage.ids import IdGenerator, NodeNotHeld, id_node
from tests.conftest import REDIS_URL, REPO, TEST_JWT_SECRET
from tests.support import wait_until


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    client = rstore.create_client(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
def keys(redis_prefix: str) -> rstore.Keys:
    """A key space of this test's own (under the session prefix, whose keys are deleted at the end)."""
    return rstore.Keys(f"{redis_prefix}lease{uuid.uuid4().hex[:8]}:")


def lease(client: aioredis.Redis, keys: rstore.Keys, ttl_s: float = 10.0, nodes: int = 1024) -> rstore.NodeLease:
    return rstore.NodeLease(client, keys, IdGenerator(), ttl_s=ttl_s, nodes=nodes)


async def test_leases_taken_at_the_same_time_never_get_the_same_node(client: aioredis.Redis, keys: rstore.Keys) -> None:
    few_keys = rstore.Keys(keys.prefix + "few:")
    many = [lease(client, keys) for _ in range(50)]
    few = [lease(client, few_keys, nodes=8) for _ in range(8)]
    try:
        assert len(set(await asyncio.gather(*(x.acquire() for x in many)))) == 50
        assert sorted(await asyncio.gather(*(x.acquire() for x in few))) == list(range(8))
        values = [await client.get(few_keys.node_lease(n)) for n in range(8)]
        assert len(set(values)) == 8 and None not in values, "each key holds its own owner token"
    finally:
        await asyncio.gather(*(x.release() for x in many + few))


async def test_a_released_node_is_free_again_and_its_generator_stops_minting(
    client: aioredis.Redis, keys: rstore.Keys
) -> None:
    first, second = lease(client, keys, nodes=1), lease(client, keys, nodes=1)
    assert await first.acquire() == 0
    assert first.generator is not None and id_node(first.generator.next_id()) == 0
    with pytest.raises(rstore.NoFreeNode):
        await second.acquire()

    await first.release()
    assert await client.exists(keys.node_lease(0)) == 0
    with pytest.raises(NodeNotHeld):
        first.generator.next_id()
    assert await second.acquire() == 0
    await second.release()


async def test_a_stolen_lease_is_detected_and_never_minted_with_again(
    client: aioredis.Redis, keys: rstore.Keys
) -> None:
    mine = lease(client, keys, nodes=2)
    node = await mine.acquire()
    await client.set(keys.node_lease(node), b"someone-else", px=10_000)

    assert await mine.renew() is False
    assert mine.node is None and not mine.held
    assert mine.generator is not None
    with pytest.raises(NodeNotHeld):
        mine.generator.next_id()
    await mine.release()
    assert await client.get(keys.node_lease(node)) == b"someone-else", "release never deletes another's lease"


async def test_an_expired_lease_stops_minting_by_itself_and_its_renewal_finds_it_lost(
    client: aioredis.Redis, keys: rstore.Keys
) -> None:
    mine = lease(client, keys, ttl_s=0.3)
    node = await mine.acquire()
    generator = mine.generator
    assert generator is not None and generator.holds(node)

    async def expired() -> bool:
        return await client.exists(keys.node_lease(node)) == 0

    await wait_until(expired, timeout=5)
    assert not generator.holds(node), "the generator's deadline ends before the key does"
    with pytest.raises(NodeNotHeld):
        generator.next_id()
    assert await mine.renew() is False


async def test_the_renewal_loop_replaces_a_lost_lease_with_another_node(
    client: aioredis.Redis, keys: rstore.Keys, caplog: pytest.LogCaptureFixture
) -> None:
    mine = lease(client, keys, ttl_s=1.0, nodes=2)
    lost = await mine.acquire()
    mine.start_renewing()
    try:
        await client.set(keys.node_lease(lost), b"someone-else", px=10_000)

        async def replaced() -> bool:
            return mine.node is not None and mine.node != lost

        with caplog.at_level(logging.WARNING, logger="i9lyfe.node_lease"):
            await wait_until(replaced, timeout=5)
        assert any(r.levelno == logging.ERROR and "lease lost" in r.getMessage() for r in caplog.records)
        assert mine.generator is not None and id_node(mine.generator.next_id()) == mine.node
    finally:
        await mine.release()


async def test_when_all_1024_nodes_are_taken_nothing_starts(
    client: aioredis.Redis, keys: rstore.Keys, database_url: str
) -> None:
    async with client.pipeline(transaction=False) as pipe:
        for n in range(1024):
            pipe.set(keys.node_lease(n), b"taken", px=60_000)
        await pipe.execute()

    with pytest.raises(rstore.NoFreeNode, match="all 1024 id generator nodes are leased by live processes"):
        await lease(client, keys).acquire()
    settings = Settings(
        database_url=database_url, redis_url=REDIS_URL, redis_prefix=keys.prefix, jwt_secret=TEST_JWT_SECRET
    )
    with pytest.raises(rstore.NoFreeNode):
        await Services.create(settings, pool_max=1)


async def test_renewal_keeps_the_lease_alive_past_its_ttl(client: aioredis.Redis, keys: rstore.Keys) -> None:
    ttl = 1.0
    renewed, unrenewed = lease(client, keys, ttl_s=ttl), lease(client, keys, ttl_s=ttl)
    node = await renewed.acquire()
    other = await unrenewed.acquire()
    started = time.monotonic()
    renewed.start_renewing()
    try:

        async def past_ttl() -> bool:
            return renewed.renewals >= 4 and time.monotonic() - started > 1.5 * ttl

        await wait_until(past_ttl, timeout=10)
        assert await client.pttl(keys.node_lease(node)) > 0
        assert renewed.held and renewed.generator is not None and renewed.generator.holds(node)
        assert await client.exists(keys.node_lease(other)) == 0, "without renewal the same TTL ran out"
    finally:
        await renewed.release()
        await unrenewed.release()


# A process that builds its Services (as an api worker or a shard does), prints the node of the ids it mints,
# and keeps running until its stdin closes.
_PROCESS = """
import asyncio, sys
from actors.runtime.services import Services
from storage import ids
from storage.config import load_settings

async def main() -> None:
    services = await Services.create(load_settings(), pool_max=1)
    print((ids.new_id() >> 12) & 1023, flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await services.close()

asyncio.run(main())
"""


def test_two_live_processes_never_share_a_node_even_after_1024_starts(database_url: str, redis_prefix: str) -> None:
    prefix = f"{redis_prefix}procs{uuid.uuid4().hex[:6]}:"
    env = dict(
        os.environ, DATABASE_URL=database_url, REDIS_URL=REDIS_URL, REDIS_PREFIX=prefix, JWT_SECRET=TEST_JWT_SECRET
    )
    client = sync_redis.Redis.from_url(REDIS_URL)
    processes: list[subprocess.Popen[str]] = []
    nodes = []
    try:
        for starts_so_far in (1023, 2047):  # the 1,024th and the 2,048th start since the counter began
            client.set(prefix + "idgen:node", starts_so_far)
            process = subprocess.Popen(
                [sys.executable, "-c", _PROCESS],
                env=env,
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            processes.append(process)
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.strip().isdigit(), f"process printed {line!r}"
            nodes.append(int(line))
        assert nodes[0] != nodes[1], f"both live processes mint ids with node {nodes[0]}"
    finally:
        for process in processes:
            assert process.stdin is not None
            process.stdin.close()
            assert process.wait(timeout=30) == 0
            assert process.stdout is not None
            process.stdout.close()
    try:
        assert client.exists(*(prefix + f"idgen:lease:{n}" for n in nodes)) == 0, "closing released the leases"
    finally:
        client.close()
