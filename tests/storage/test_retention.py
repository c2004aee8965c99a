"""Retention against real PostgreSQL: a purge deletes exactly the rows past their keep time, in bounded
batches, one purger at a time."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from actors import retention
from actors.runtime.services import Services
from storage import auth as auth_store
from storage import db, ids, locks
from storage import outbox as outbox_store
from storage import users as user_store
from storage.media import object_key
from storage.media import store as media_store
from tests.storage.fresh_db import fresh_database, private_services

HOUR = 3600.0
DAY = 24 * HOUR


@pytest.fixture(scope="module")
async def retention_dsn() -> AsyncIterator[str]:
    async with fresh_database("i9purge") as dsn:
        yield dsn


@pytest.fixture
async def services(retention_dsn: str, tmp_path: Path) -> AsyncIterator[Services]:
    async with private_services(retention_dsn, media_dir=str(tmp_path / "media")) as made:
        await made.pool.execute("TRUNCATE outbox, auth_flows, users CASCADE")
        yield made


async def outbox_row(conn: asyncpg.Connection, **ago: float) -> int:
    """An outbox row whose timestamps (``created_at``, ``sent_at``, ``dead_at``) lie that many seconds back."""
    row_id = ids.new_id()
    await outbox_store.insert_events(conn, [(row_id, [1], "test.event", b"\x80")])
    for column, seconds in ago.items():
        assert column in {"created_at", "sent_at", "dead_at"}
        await conn.execute(
            f"UPDATE outbox SET {column} = now() - make_interval(secs => $2) WHERE id = $1", row_id, seconds
        )
    return row_id


async def session(conn: asyncpg.Connection, user_id: int, *, expires_in: float, revoked_ago: float | None) -> int:
    """A session (with one unused refresh token named after it) expiring ``expires_in`` seconds from now."""
    session_id = ids.new_id()
    await auth_store.insert_session(
        conn,
        session_id=session_id,
        user_id=user_id,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in),
        refresh_hash=f"token-of-{session_id}".encode(),
        user_agent="test",
        ip="127.0.0.1",
    )
    if revoked_ago is not None:
        await conn.execute(
            "UPDATE sessions SET revoked_at = now() - make_interval(secs => $2) WHERE id = $1", session_id, revoked_ago
        )
    return session_id


async def used_token(conn: asyncpg.Connection, session_id: int, name: str, used_ago: float) -> bytes:
    token = name.encode()
    await conn.execute(
        """INSERT INTO refresh_tokens (token_hash, session_id, created_at, used_at)
           VALUES ($1, $2, now() - make_interval(secs => $3), now() - make_interval(secs => $3))""",
        token,
        session_id,
        used_ago,
    )
    return token


async def flow(conn: asyncpg.Connection, *, expires_in: float, consumed_ago: float = 0, burned_ago: float = 0) -> int:
    flow_id = ids.new_id()
    await auth_store.insert_flow(
        conn,
        flow_id=flow_id,
        kind="signup",
        email=f"{flow_id}@example.com",
        user_id=None,
        code_hash=b"h",
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in),
    )
    await conn.execute(
        """UPDATE auth_flows SET consumed_at = CASE WHEN $2 > 0 THEN now() - make_interval(secs => $2) END,
                                 burned_at = CASE WHEN $3 > 0 THEN now() - make_interval(secs => $3) END
           WHERE id = $1""",
        flow_id,
        float(consumed_ago),
        float(burned_ago),
    )
    return flow_id


async def ids_of(pool: asyncpg.Pool, sql: str) -> set[object]:
    return {r[0] for r in await pool.fetch(sql)}


async def test_a_purge_deletes_exactly_the_rows_past_their_keep_time(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    async with db.transaction(services.pool) as conn:
        sent_old = await outbox_row(conn, created_at=2 * DAY, sent_at=2 * DAY)
        sent_new = await outbox_row(conn, created_at=HOUR, sent_at=HOUR)
        unsent_old = await outbox_row(conn, created_at=3 * DAY)  # still due: never purged, whatever its age
        dead_old = await outbox_row(conn, created_at=16 * DAY, dead_at=15 * DAY)
        dead_new = await outbox_row(conn, created_at=3 * DAY, dead_at=2 * DAY)

        user = await user_store.insert_user(
            conn,
            user_id=ids.new_id(),
            username="keeper",
            email="keeper@example.com",
            name="Keeper",
            bio="",
            birthday=dt.date(2000, 1, 31),
            password_hash="x",
        )
        uid = int(user["id"])
        live = await session(conn, uid, expires_in=10 * DAY, revoked_ago=None)
        used_recent = await used_token(conn, live, "used-recent", HOUR)
        used_old = await used_token(conn, live, "used-old", retention.REFRESH_REUSE_WINDOW_S + HOUR)
        revoked_2d = await session(conn, uid, expires_in=10 * DAY, revoked_ago=2 * DAY)
        revoked_1h = await session(conn, uid, expires_in=10 * DAY, revoked_ago=HOUR)
        expired_31d = await session(conn, uid, expires_in=-31 * DAY, revoked_ago=None)
        revoked_31d = await session(conn, uid, expires_in=10 * DAY, revoked_ago=31 * DAY)

        expired_old = await flow(conn, expires_in=-2 * DAY)
        consumed_old = await flow(conn, expires_in=-23 * HOUR, consumed_ago=25 * HOUR)
        burned_old = await flow(conn, expires_in=-23 * HOUR, burned_ago=25 * HOUR)
        expired_recent = await flow(conn, expires_in=-HOUR)
        consumed_recent = await flow(conn, expires_in=10 * 60, consumed_ago=60)
        live_flow = await flow(conn, expires_in=10 * 60)

    with caplog.at_level(logging.INFO, logger="i9lyfe.retention"):
        counts = await retention.purge_once(services, batch=1, max_batches=10)  # one row per statement
    assert counts == {
        "outbox_sent": 1,
        "outbox_dead": 1,
        "auth_flows": 3,
        "sessions": 2,
        "refresh_tokens_used": 1,
        "refresh_tokens_ended": 1,
        "idempotency_keys": 0,
        "media_abandoned": 0,
    }
    logged = [r for r in caplog.records if r.name == "i9lyfe.retention"]
    assert len(logged) == 1 and logged[0].fields == counts  # type: ignore[attr-defined]

    pool = services.pool
    assert await ids_of(pool, "SELECT id FROM outbox") == {sent_new, unsent_old, dead_new}
    assert {sent_old, dead_old}.isdisjoint(await ids_of(pool, "SELECT id FROM outbox"))
    assert await ids_of(pool, "SELECT id FROM auth_flows") == {expired_recent, consumed_recent, live_flow}
    assert {expired_old, consumed_old, burned_old}.isdisjoint(await ids_of(pool, "SELECT id FROM auth_flows"))
    assert await ids_of(pool, "SELECT id FROM sessions") == {live, revoked_2d, revoked_1h}
    assert {expired_31d, revoked_31d}.isdisjoint(await ids_of(pool, "SELECT id FROM sessions"))
    tokens = await ids_of(pool, "SELECT token_hash FROM refresh_tokens")
    assert tokens == {f"token-of-{live}".encode(), used_recent, f"token-of-{revoked_1h}".encode()}
    assert used_old not in tokens

    # Nothing left to do: a second pass deletes nothing and says nothing.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="i9lyfe.retention"):
        assert set((await retention.purge_once(services)).values()) == {0}
    assert [r for r in caplog.records if r.name == "i9lyfe.retention"] == []


async def test_a_purge_works_in_bounded_batches_and_leaves_the_rest_for_the_next_run(services: Services) -> None:
    async with db.transaction(services.pool) as conn:
        for _ in range(5):
            await outbox_row(conn, created_at=2 * DAY, sent_at=2 * DAY)
    assert (await retention.purge_once(services, batch=2, max_batches=2))["outbox_sent"] == 4
    assert await services.pool.fetchval("SELECT count(*) FROM outbox") == 1
    assert (await retention.purge_once(services, batch=2, max_batches=2))["outbox_sent"] == 1
    assert await services.pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_only_one_purge_runs_at_a_time(services: Services) -> None:
    async with db.transaction(services.pool) as conn:
        await outbox_row(conn, created_at=2 * DAY, sent_at=2 * DAY)
    async with services.pool.acquire() as other:  # another process's purge, in progress
        assert await locks.try_lock(other, locks.RETENTION_LOCK_KEY)
        try:
            assert await retention.purge_once(services) == {}
        finally:
            await locks.unlock(other, locks.RETENTION_LOCK_KEY)
    assert await services.pool.fetchval("SELECT count(*) FROM outbox") == 1
    assert (await retention.purge_once(services))["outbox_sent"] == 1


async def test_uploads_abandoned_for_a_day_go_with_their_files_and_completed_media_stays(
    services: Services, tmp_path: Path
) -> None:
    async with db.transaction(services.pool) as conn:
        user = await user_store.insert_user(
            conn,
            user_id=ids.new_id(),
            username="uploader",
            email="uploader@example.com",
            name="Uploader",
            bio="",
            birthday=dt.date(2000, 1, 31),
            password_hash="x",
        )
        made: dict[str, int] = {}
        for label, age, state in [("old", 2 * DAY, "pending"), ("new", HOUR, "pending"), ("done", 3 * DAY, "ready")]:
            media_id = ids.new_id()
            made[label] = media_id
            await media_store.insert_media(
                conn,
                media_id=media_id,
                owner_id=int(user["id"]),
                purpose="chat",
                kind="file",
                content_type="application/pdf",
                declared_size=5,
                name=None,
                object_key=object_key(media_id),
                upload_expires_at=dt.datetime.now(dt.UTC),
            )
            await conn.execute(
                "UPDATE media SET created_at = now() - make_interval(secs => $2) WHERE id = $1", media_id, age
            )
            if state == "ready":
                await media_store.complete_media(conn, media_id, {"size": 5, "content_type": "application/pdf"})
    root = tmp_path / "media" / "media"
    root.mkdir(parents=True, exist_ok=True)
    for media_id in made.values():
        (root / f"{media_id}.upload").write_bytes(b"%PDF-")
    (root / f"{made['done']}").write_bytes(b"%PDF-")

    counts = await retention.purge_once(services, batch=1, max_batches=10)
    assert counts["media_abandoned"] == 1
    left = await ids_of(services.pool, "SELECT id FROM media")
    assert left == {made["new"], made["done"]}
    assert not (root / f"{made['old']}.upload").exists()
    assert (root / f"{made['new']}.upload").exists() and (root / f"{made['done']}").exists()
    assert (await retention.purge_once(services))["media_abandoned"] == 0
