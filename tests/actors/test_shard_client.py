"""ShardClient micro-batching against the real shard core (in-process, real PostgreSQL and Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from actors.runtime.client import ShardClient
from actors.runtime.shards import UserShardCore
from domain.errors import NotFound
from domain.ops import Follow, Touch
from storage.config import Settings
from tests.actors.in_process import InProcess
from tests.conftest import REDIS_URL, TEST_JWT_SECRET


@pytest.fixture
async def cores(database_url: str, redis_prefix: str) -> AsyncIterator[list[UserShardCore]]:
    settings = Settings(
        database_url=database_url,
        redis_url=REDIS_URL,
        redis_prefix=redis_prefix,
        jwt_secret=TEST_JWT_SECRET,
        user_shards=4,
    )
    made = [UserShardCore(k, settings) for k in range(4)]
    yield made
    for core in made:
        await core.close()


async def test_concurrent_calls_ride_in_few_batches_and_each_gets_its_own_result(
    cores: list[UserShardCore],
) -> None:
    client = ShardClient([InProcess(c) for c in cores], max_batch=64)
    user_ids = list(range(1_000, 1_400))
    results = await asyncio.gather(*(client.call(Touch(user_id=uid)) for uid in user_ids))
    assert len(results) == 400
    assert all(isinstance(r, str) for r in results)
    assert client.ops_sent == 400
    assert client.batches_sent < 60, client.batches_sent
    assert sum(c.batches for c in cores) == client.batches_sent
    # Every op ran in its own entity on the shard the routing names.
    for uid in user_ids:
        assert cores[client.shard_for(uid)].table.peek(uid) is not None


async def test_one_failing_op_does_not_fail_its_batch(cores: list[UserShardCore]) -> None:
    client = ShardClient([InProcess(c) for c in cores])
    good = client.call(Touch(user_id=7))
    bad = client.call(Follow(user_id=7, username="nobody_at_all"))
    results = await asyncio.gather(good, bad, return_exceptions=True)
    assert isinstance(results[0], str)
    assert isinstance(results[1], NotFound)


async def test_without_batching_every_op_is_its_own_call(cores: list[UserShardCore]) -> None:
    client = ShardClient([InProcess(c) for c in cores], max_batch=1)
    await asyncio.gather(*(client.call(Touch(user_id=uid)) for uid in range(50)))
    assert client.batches_sent == 50
