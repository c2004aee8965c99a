"""A private, fully migrated database (and Redis prefix) for storage tests that scan whole tables.

The session database is shared with the running server, whose shards relay the outbox in the background: a
test that relays or purges whole tables there would take the server's rows and race its relay.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from actors.runtime.services import Services
from storage.config import Settings
from storage.migrate import apply_migrations
from tests.conftest import ADMIN_DSN, REDIS_URL, TEST_JWT_SECRET


@asynccontextmanager
async def fresh_database(prefix: str) -> AsyncIterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
        conn = await asyncpg.connect(dsn)
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        yield dsn
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def private_services(dsn: str, **overrides: Any) -> AsyncIterator[Services]:
    """Services on ``dsn`` with a Redis prefix of their own, removed afterwards (``overrides``: other settings)."""
    prefix = f"i9test:{uuid.uuid4().hex[:10]}:"
    settings = Settings(
        database_url=dsn,
        redis_url=REDIS_URL,
        redis_prefix=prefix,
        jwt_secret=TEST_JWT_SECRET,
        hash_concurrency=1,
        **overrides,
    )
    services = await Services.create(settings, pool_max=4)
    try:
        yield services
    finally:
        await services.close()
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()
