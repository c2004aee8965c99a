"""Migrations: applied to an empty database they give exactly the committed schema snapshot; they are
forward-only (an edited applied migration is refused) and re-running is a no-op."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest

from storage.migrate import SNAPSHOT_PATH, MigrationError, apply_migrations, load_migrations, schema_snapshot
from tests.conftest import ADMIN_DSN


@pytest.fixture
async def empty_db() -> AsyncIterator[asyncpg.Connection]:
    name = f"i9mig_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield conn
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_migrations_on_an_empty_database_give_the_committed_schema(empty_db: asyncpg.Connection) -> None:
    applied = await apply_migrations(empty_db)
    assert applied == [m.name for m in load_migrations()]
    snapshot = await schema_snapshot(empty_db)
    assert snapshot == SNAPSHOT_PATH.read_text(), (
        "schema drift: run `python -m storage.migrate --write-snapshot` on a fresh database and commit it"
    )
    assert await apply_migrations(empty_db) == []


async def test_an_edited_applied_migration_is_refused(empty_db: asyncpg.Connection) -> None:
    migrations = load_migrations()
    await apply_migrations(empty_db, migrations)
    edited = [replace(migrations[0], sql=migrations[0].sql + "\n-- edited\n"), *migrations[1:]]
    with pytest.raises(MigrationError, match="edited"):
        await apply_migrations(empty_db, edited)


async def test_a_failing_migration_leaves_nothing_behind(empty_db: asyncpg.Connection) -> None:
    migrations = load_migrations()
    broken = replace(
        migrations[-1],
        version=len(migrations) + 1,
        name="9999_broken.sql",
        sql="CREATE TABLE half_done (id int); SELECT no_such_function();",
    )
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await apply_migrations(empty_db, [*migrations, broken])
    assert await empty_db.fetchval("SELECT to_regclass('half_done')") is None
    assert await empty_db.fetchval("SELECT max(version) FROM schema_migrations") == len(migrations)
