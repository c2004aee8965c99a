"""Postgres advisory locks: one holder at a time for cluster-wide chores (several processes may try)."""

from __future__ import annotations

import asyncpg

RETENTION_LOCK_KEY = 0x6939_7075_7267  # "i9purg"; storage/migrate.py holds 0x6939_6C79_6665


async def try_lock(conn: asyncpg.Connection, key: int) -> bool:
    """Take the session-level lock ``key`` on this connection if free; never waits."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))


async def unlock(conn: asyncpg.Connection, key: int) -> None:
    """Release ``key``; if that fails (cancelled, I/O), the connection is terminated so that the session, and
    its lock with it, ends instead of going back to the pool still holding the lock."""
    try:
        await conn.execute("SELECT pg_advisory_unlock($1)", key)
    except BaseException:
        conn.terminate()
        raise
