"""Every pool is bounded and waits with a deadline: past it, an error the api answers with 503 (never a wait
without end, never the default Redis pool's instant "Too many connections")."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from api.overload import as_unavailable
from storage import db
from storage import redis as rstore
from tests.conftest import REDIS_URL


async def test_a_database_pool_with_every_connection_taken_gives_up_after_its_acquire_deadline(
    database_url: str,
) -> None:
    pool = await db.create_pool(database_url, 1, 1, acquire_timeout=0.3)
    try:
        async with pool.acquire() as held:
            assert await held.fetchval("SELECT 1") == 1
            for attempt in (
                lambda: pool.fetchval("SELECT 1"),  # the shortcuts asyncpg offers wait forever by default
                lambda: pool.execute("SELECT 1"),
                lambda: _in_transaction(pool),
            ):
                started = time.monotonic()
                with pytest.raises(db.PoolTimeout) as caught:
                    await attempt()
                assert 0.25 < time.monotonic() - started < 3
                shed = as_unavailable(caught.value)
                assert shed is not None and shed.http_status == 503 and shed.retry_after >= 1
        assert await pool.fetchval("SELECT 2") == 2  # free again: served at once
    finally:
        await pool.close()


async def _in_transaction(pool: asyncpg.Pool) -> None:
    async with db.transaction(pool) as conn:
        await conn.execute("SELECT 1")


async def test_a_statement_past_the_command_timeout_is_cancelled(database_url: str) -> None:
    pool = await db.create_pool(database_url, 1, 1, command_timeout=0.3)
    try:
        with pytest.raises(TimeoutError) as caught:
            await pool.execute("SELECT pg_sleep(5)")
        assert as_unavailable(caught.value) is not None
        assert await pool.fetchval("SELECT 3") == 3  # the connection is usable again
    finally:
        await pool.close()


async def test_a_redis_client_with_every_connection_taken_waits_then_raises_no_connection_available() -> None:
    client = rstore.create_client(REDIS_URL, max_connections=2, pool_timeout_s=0.3)
    pool = client.connection_pool
    try:
        held = [await pool.get_connection(), await pool.get_connection()]
        started = time.monotonic()
        with pytest.raises(RedisConnectionError, match="No connection available") as caught:
            await client.ping()
        assert 0.25 < time.monotonic() - started < 0.9
        assert as_unavailable(caught.value) is not None
        waiting = asyncio.create_task(client.ping())  # waits for a connection: served once one is back
        await pool.release(held.pop())
        assert await waiting
    finally:
        await client.aclose()
