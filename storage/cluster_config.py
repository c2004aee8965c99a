"""Cluster configuration recorded in the database (table ``cluster_config``).

Settings every process of a deployment must agree on, and that cannot change under running processes: the
number of user and chat shards (K). Entity ``id`` lives in shard ``hash(id) % K``, so two processes with
different K route the same user to different shards. The first api process to start records its values;
every later one compares (actors/runtime/topology.py) and refuses to start on a mismatch.

    python -m storage.cluster_config show              # the recorded values
    python -m storage.cluster_config set user_shards 8 # change one (stop every api process first)
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

# Keys with a meaning (and a check on their value); the CLI refuses any other.
SHARD_COUNT_KEYS = ("user_shards", "chat_shards")


async def find_value(conn: asyncpg.Connection | asyncpg.Pool, key: str) -> str | None:
    value: str | None = await conn.fetchval("SELECT value FROM cluster_config WHERE key = $1", key)
    return value


async def insert_value_if_absent(conn: asyncpg.Connection, key: str, value: str) -> str:
    """Record ``value`` unless ``key`` already has one; return the recorded value (ours or the earlier one)."""
    await conn.execute(
        "INSERT INTO cluster_config (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", key, value
    )
    # A separate statement: under READ COMMITTED it sees a row a concurrent first start just committed.
    recorded = await find_value(conn, key)
    assert recorded is not None
    return recorded


async def upsert_value(conn: asyncpg.Connection, key: str, value: str) -> None:
    await conn.execute(
        """INSERT INTO cluster_config (key, value) VALUES ($1, $2)
           ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()""",
        key,
        value,
    )


async def list_values(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await conn.fetch("SELECT key, value, updated_at FROM cluster_config ORDER BY key"))


def check_value(key: str, value: str) -> str:
    """The canonical text of ``value`` for ``key``; ValueError when the key or the value makes no sense."""
    if key not in SHARD_COUNT_KEYS:
        raise ValueError(f"unknown key {key!r}; known keys: {', '.join(SHARD_COUNT_KEYS)}")
    if not value.isdigit() or int(value) <= 0:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
    return str(int(value))


async def _main(argv: list[str]) -> int:
    from storage.config import load_settings

    parser = argparse.ArgumentParser(
        prog="python -m storage.cluster_config",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("show", help="print the recorded values")
    setter = commands.add_parser("set", help="record a new value (stop every api process first)")
    setter.add_argument("key", choices=SHARD_COUNT_KEYS)
    setter.add_argument("value")
    args = parser.parse_args(argv)
    conn = await asyncpg.connect(load_settings().database_url)
    try:
        if args.command == "set":
            try:
                value = check_value(args.key, args.value)
            except ValueError as exc:
                parser.error(str(exc))
            async with conn.transaction():
                before = await find_value(conn, args.key)
                await upsert_value(conn, args.key, value)
            print(f"{args.key}: {before if before is not None else '(unset)'} -> {value}", file=sys.stderr)
        for row in await list_values(conn):
            print(f"{row['key']}={row['value']}  # since {row['updated_at'].isoformat()}")
    finally:
        await conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(_main(sys.argv[1:])))
