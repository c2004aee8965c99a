"""Create N load-test accounts directly in PostgreSQL (one argon2 hash shared by all, so seeding is fast).

    .venv/bin/python loadtests/seed.py --users 200            # uses DATABASE_URL (default: the dev database)

It leases an id node from REDIS_URL/REDIS_PREFIX like the servers do, so use the same Redis as they do.

Accounts are named ``load_0000``..``load_NNNN`` with the password ``Load-test-pass-1``; existing ones are kept.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from domain.passwords import PasswordService
from storage import ids
from storage import redis as rstore
from storage.config import load_settings

PASSWORD = "Load-test-pass-1"


def username(n: int) -> str:
    return f"load_{n:04d}"


async def seed(count: int) -> None:
    settings = load_settings()
    # Ids need a node number no live server process holds: lease one from REDIS_URL as the servers do.
    client = rstore.create_client(settings.redis_url)
    lease = rstore.NodeLease(client, rstore.Keys(settings.redis_prefix), ids.default_generator())
    try:
        await lease.acquire()
        lease.start_renewing()
        await _insert_users(settings.database_url, count)
    finally:
        await lease.release()
        await client.aclose()
    print(f"seeded up to {count} users ({username(0)}..{username(count - 1)}), password {PASSWORD!r}")


async def _insert_users(database_url: str, count: int) -> None:
    passwords = PasswordService()
    password_hash = await passwords.hash(PASSWORD)
    passwords.close()
    conn = await asyncpg.connect(database_url)
    try:
        rows = [
            (ids.new_id(), username(n), f"{username(n)}@load.example", f"Load {n}", dt.date(1990, 1, 1), password_hash)
            for n in range(count)
        ]
        await conn.executemany(
            """INSERT INTO users (id, username, email, name, birthday, password_hash)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
            rows,
        )
    finally:
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    asyncio.run(seed(parser.parse_args().users))
