"""The pool's cheap reset: a released connection keeps no advisory lock and no open transaction."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from storage import db, locks
from tests.support import wait_until

KEY = 0x6939_7465_7374


async def test_a_lock_whose_release_fails_ends_with_its_connection(database_url: str) -> None:
    pool = await db.create_pool(database_url, 1, 1)
    other = await asyncpg.connect(database_url)
    try:
        async with pool.acquire() as conn:
            assert await locks.try_lock(conn, KEY)
            conn_pid = conn.get_server_pid()
            unlock = asyncio.ensure_future(locks.unlock(conn, KEY))
            await asyncio.sleep(0)  # the unlock statement is on its way...
            unlock.cancel()  # ...when the holder is cancelled
            with pytest.raises(asyncio.CancelledError):
                await unlock

        async def free() -> bool:  # the session that held it ends (the server notices the closed socket)
            return bool(await other.fetchval("SELECT pg_try_advisory_lock($1)", KEY))

        await wait_until(free, timeout=5)
        await other.execute("SELECT pg_advisory_unlock($1)", KEY)
        async with pool.acquire() as conn:
            assert conn.get_server_pid() != conn_pid
    finally:
        await other.close()
        await pool.close()


async def test_a_transaction_left_open_is_rolled_back_on_release(database_url: str) -> None:
    pool = await db.create_pool(database_url, 1, 1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("SET LOCAL statement_timeout = 1234")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SHOW statement_timeout") != "1234ms"
    finally:
        await pool.close()
