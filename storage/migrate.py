"""Forward-only SQL migrations.

Files ``storage/migrations/NNNN_verb_object.sql`` are applied in order, each in its own transaction, and
recorded in ``schema_migrations`` with a checksum. An applied file whose text changed is an error: migrations
are never edited, only added. A Postgres advisory lock makes concurrent runners (several api processes, CI)
safe.

    python -m storage.migrate            # create the database if missing, apply pending migrations
    python -m storage.migrate --snapshot # print the schema snapshot the drift test compares against
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SNAPSHOT_PATH = Path(__file__).resolve().parent / "schema_snapshot.txt"
LOCK_KEY = 0x6939_6C79_6665  # "i9lyfe"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"bad migration file name {path.name!r}; expected NNNN_verb_object.sql")
        found.append(Migration(int(match.group(1)), path.name, path.read_text()))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration versions must be 1..N without gaps, got {versions}")
    return found


async def ensure_database(dsn: str) -> None:
    """Create the database named in ``dsn`` when it does not exist yet."""
    parts = urlsplit(dsn)
    dbname = parts.path.lstrip("/")
    if not dbname:
        return
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
        try:
            await admin.execute(f'CREATE DATABASE "{dbname}"')
        except asyncpg.DuplicateDatabaseError:
            pass
        finally:
            await admin.close()
    else:
        await conn.close()


async def apply_migrations(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[str]:
    """Apply pending migrations; return the names applied."""
    migrations = load_migrations() if migrations is None else migrations
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
        done = {r["version"]: r for r in rows}
        known = {m.version for m in migrations}
        unknown = sorted(set(done) - known)
        if unknown:
            raise MigrationError(f"database has migrations this code does not know: {unknown}")
        for m in migrations:
            row = done.get(m.version)
            if row is not None:
                if row["checksum"] != m.checksum:
                    raise MigrationError(f"applied migration {m.name} was edited; add a new migration instead")
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            applied_now.append(m.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    return applied_now


async def schema_snapshot(conn: asyncpg.Connection) -> str:
    """A stable text rendering of the public schema: columns, constraints, indexes, extensions."""
    lines: list[str] = []
    for r in await conn.fetch("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1"):
        lines.append(f"extension {r['extname']}")
    for r in await conn.fetch(
        """SELECT c.table_name, c.column_name, c.data_type, c.is_nullable, coalesce(c.column_default, '') AS d
           FROM information_schema.columns c
           JOIN information_schema.tables t ON t.table_name = c.table_name AND t.table_schema = c.table_schema
           WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
           ORDER BY c.table_name, c.column_name"""
    ):
        null = "null" if r["is_nullable"] == "YES" else "not null"
        lines.append(f"column {r['table_name']}.{r['column_name']} {r['data_type']} {null} default={r['d']}")
    for r in await conn.fetch(
        """SELECT conrelid::regclass::text AS tbl, conname, pg_get_constraintdef(oid) AS def
           FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"""
    ):
        lines.append(f"constraint {r['tbl']}.{r['conname']} {r['def']}")
    for r in await conn.fetch(
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2"
    ):
        lines.append(f"index {r['tablename']}.{r['indexname']} {r['indexdef']}")
    for r in await conn.fetch(
        """SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args FROM pg_proc p
           WHERE p.pronamespace = 'public'::regnamespace ORDER BY 1, 2"""
    ):
        lines.append(f"function {r['proname']}({r['args']})")
    return "\n".join(lines) + "\n"


async def migrate(dsn: str) -> list[str]:
    await ensure_database(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()


async def _main(argv: list[str]) -> int:
    from storage.config import load_settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--snapshot", action="store_true", help="print the schema snapshot after migrating")
    parser.add_argument("--write-snapshot", action="store_true", help=f"write the snapshot to {SNAPSHOT_PATH}")
    args = parser.parse_args(argv)
    dsn = load_settings().database_url
    applied = await migrate(dsn)
    print(f"migrations applied: {applied or 'none pending'}", file=sys.stderr)
    if args.snapshot or args.write_snapshot:
        conn = await asyncpg.connect(dsn)
        try:
            text = await schema_snapshot(conn)
        finally:
            await conn.close()
        if args.write_snapshot:
            SNAPSHOT_PATH.write_text(text)
        else:
            print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(_main(sys.argv[1:])))
