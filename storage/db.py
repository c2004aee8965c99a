"""asyncpg pool and transaction helpers. Storage functions take a connection and never commit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from storage.errors import UniqueViolation

Connection = asyncpg.Connection
Pool = asyncpg.Pool


async def create_pool(dsn: str, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=30,
        server_settings={"application_name": "i9lyfe", "timezone": "UTC"},
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[Any]:
    """Acquire a connection and run one transaction; unique violations become ``UniqueViolation``."""
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                yield conn
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolation(exc.constraint_name or "") from exc
