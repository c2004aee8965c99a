"""The shard counts are recorded by the first start and a process configured otherwise is refused with a
message that says how to change them; the CLI shows and changes them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest

from actors.runtime.topology import ShardCountMismatch, check_shard_count
from storage import cluster_config
from storage.config import Settings
from storage.migrate import apply_migrations
from tests.conftest import ADMIN_DSN, REPO


@pytest.fixture
async def fresh_db() -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    name = f"i9cfg_{uuid.uuid4().hex[:10]}"
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(dsn)
    await apply_migrations(conn)
    await conn.close()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        yield dsn, pool
    finally:
        await pool.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_the_first_start_records_the_shard_counts_and_later_ones_must_match(
    fresh_db: tuple[str, asyncpg.Pool],
) -> None:
    _, pool = fresh_db
    settings = Settings(user_shards=4, chat_shards=2)
    await check_shard_count(pool, settings)
    assert await cluster_config.find_value(pool, "user_shards") == "4"
    assert await cluster_config.find_value(pool, "chat_shards") == "2"
    await check_shard_count(pool, settings)  # a restart with the same K

    with pytest.raises(ShardCountMismatch) as raised:
        await check_shard_count(pool, replace(settings, user_shards=8))
    message = str(raised.value)
    assert "USER_SHARDS=8 but this database was set up with USER_SHARDS=4" in message
    assert "re-maps every user" in message
    assert "python -m storage.cluster_config set user_shards 8" in message
    assert isinstance(raised.value, RuntimeError)

    with pytest.raises(ShardCountMismatch, match="CHAT_SHARDS=3 but this database was set up with CHAT_SHARDS=2"):
        await check_shard_count(pool, replace(settings, chat_shards=3))
    assert await cluster_config.find_value(pool, "user_shards") == "4"  # a refused start records nothing


def test_the_cli_shows_and_changes_the_recorded_shard_count(fresh_db: tuple[str, asyncpg.Pool]) -> None:
    dsn, _ = fresh_db
    env = dict(os.environ, DATABASE_URL=dsn)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "storage.cluster_config", *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert cli("set", "user_shards", "4").returncode == 0
    changed = cli("set", "user_shards", "8")
    assert changed.returncode == 0, changed.stderr
    assert "user_shards: 4 -> 8" in changed.stderr
    assert "user_shards=8" in cli("show").stdout
    refused = cli("set", "user_shards", "0")
    assert refused.returncode != 0
    assert "positive integer" in refused.stderr
    assert cli("set", "jwt_secret", "x").returncode != 0
