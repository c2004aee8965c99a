"""asyncpg pool and transaction helpers. Storage functions take a connection and never commit.

Every use of the pool has a deadline: waiting for a connection (``pool.acquire()``, ``pool.fetchrow(...)``,
``transaction``) takes at most ``ACQUIRE_TIMEOUT_S`` and then raises ``PoolTimeout``; a statement runs at most
``COMMAND_TIMEOUT_S`` (asyncpg cancels it and raises ``TimeoutError``). The api answers both with 503.

An unreachable PostgreSQL is an outage (storage/outage.py): it is logged once per outage per process, not once per
failure (asyncpg's pool logs each failed attempt to restore its connection floor with a stack: those records are
counted instead), and it ends with the first new connection (or acquire) that succeeds. Nothing needs a
restart: a pool replaces its lost connections on demand.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from storage.errors import UniqueViolation
from storage.outage import OUTAGES, PoolLogFilter

Connection = asyncpg.Connection
Pool = asyncpg.Pool

ACQUIRE_TIMEOUT_S = 2.0
COMMAND_TIMEOUT_S = 10.0

log = logging.getLogger("i9lyfe.db")
# asyncpg's pool logs every failed attempt to restore its floor (min_size) with a stack, 1-60 s apart per pool.
_FLOOR_FILTER = PoolLogFilter("restoring a connection pool's floor failed", log)


class PoolTimeout(TimeoutError):
    """No connection of the pool became free within its acquire deadline: the pool is exhausted."""

    outage_of = "postgresql"  # overloaded: a 503 (storage/outage.py)


class BoundedPool(asyncpg.Pool):  # type: ignore[misc]  # asyncpg is untyped
    """An asyncpg pool whose every acquire waits at most ``acquire_timeout`` seconds unless told otherwise.

    asyncpg waits forever by default, and its ``fetch*``/``execute`` shortcuts take no acquire timeout; they
    all acquire through ``_acquire``, so that is the one place the deadline goes (tests/storage/test_db_pool.py
    checks it still holds for the installed asyncpg)."""

    def __init__(self, *args: Any, acquire_timeout: float, **kwargs: Any) -> None:
        self.acquire_timeout = acquire_timeout
        super().__init__(*args, **kwargs)

    async def _acquire(self, wait_s: float | None) -> Any:  # asyncpg calls it positionally
        budget = self.acquire_timeout if wait_s is None else wait_s
        try:
            connection = await super()._acquire(budget)
        except TimeoutError as exc:
            raise PoolTimeout(f"no database connection became free within {budget:g} s") from exc
        OUTAGES.ok("postgresql")  # a dict look-up unless an outage is going on
        return connection

    def acquire(self, *, timeout: float | None = None) -> Any:
        """A pooled connection; inside an op of a group commit (``GroupCommit.op``), in the task that runs it, the
        batch's own connection instead, so that every statement of the op (``transaction``, ``fetch``...) joins
        the batch's transaction and sees what the batch wrote."""
        joined = _joined(self)
        if joined is not None:
            return _Joined(joined)
        return super().acquire(timeout=timeout)

    async def release(self, connection: Any, **kwargs: Any) -> None:
        if connection is _joined(self):
            return  # the batch's connection goes back when the batch ends
        await super().release(connection, **kwargs)

    async def _get_new_connection(self) -> Any:
        connection = await super()._get_new_connection()
        OUTAGES.ok("postgresql")  # PostgreSQL took a new connection: an outage is over
        return connection


async def _reset(conn: asyncpg.Connection) -> None:
    """Run on release instead of asyncpg's reset query (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL``: a second round trip per pooled query, 11% of a ``GET /me``). asyncpg still rolls back an open
    transaction first. Nothing here leaves session state on a pooled connection: no LISTEN, no session SET, no
    cursor outside a transaction, and the one session-level advisory lock (storage/locks.py) is released by its
    holder or the connection is terminated (tests/storage/test_pools.py)."""


# Statements planned for their parameters every time: search (storage/search.py: whether a word is in most posts or
# in a few decides the plan) and the recommendations' checks (storage/recs.py ``changed_since``, storage/graph.py
# ``suggestions_changed_since``: their time floors decide it; the check's generic plan took 5.7 ms against 0.6 ms).
# A prepared statement's generic plan cannot know them.
PLANNED_SETTINGS = {"plan_cache_mode": "force_custom_plan"}
# Statements whose every LIMIT, window and weight is written into their text (storage/recs.py ``candidates``): the
# plan made for the first call fits every later one, and planning each call (~1 ms for explore's) is saved.
GENERIC_SETTINGS = {"plan_cache_mode": "force_generic_plan"}


def literals(prefix: str, values: Any) -> dict[str, str]:
    """The fields of a dataclass of sizes, windows or weights as SQL number literals, named ``prefix + field``,
    for a statement that holds them in its text (see GENERIC_SETTINGS). Anything but an int or a float is
    refused: no other text ever reaches a statement this way."""
    out = {}
    for field in dataclasses.fields(values):
        value = getattr(values, field.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{field.name} is not a number: {value!r}")
        out[prefix + field.name] = repr(float(value)) if isinstance(value, float) else str(int(value))
    return out


async def create_pool(
    dsn: str,
    min_size: int = 1,
    max_size: int = 10,
    *,
    acquire_timeout: float = ACQUIRE_TIMEOUT_S,
    command_timeout: float = COMMAND_TIMEOUT_S,
    extra_settings: dict[str, str] | None = None,
) -> asyncpg.Pool:
    logging.getLogger("asyncpg.pool").addFilter(_FLOOR_FILTER)  # once: a filter already there is not added again
    pool = BoundedPool(
        dsn,
        acquire_timeout=acquire_timeout,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        command_timeout=command_timeout,
        # pg_trgm's thresholds for the % and <% operators of search (storage/search.py): set per connection, so
        # the trigram indexes serve them (a placeholder until the extension loads, then its value).
        server_settings={
            "application_name": "i9lyfe",
            "timezone": "UTC",
            "pg_trgm.similarity_threshold": "0.3",
            "pg_trgm.word_similarity_threshold": "0.4",
            **(extra_settings or {}),
        },
        reset=_reset,
    )
    await pool
    return pool


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[Any]:
    """Acquire a connection (within the pool's deadline) and run one transaction; unique violations become
    ``UniqueViolation``. Inside an op of a group commit it is that op's part of the batch's transaction: no
    savepoint of its own (two round trips saved); an exception rolls the op back to its savepoint (everything the
    op wrote so far, which in every op is this block's work) before it propagates."""
    joined = _joined(pool)
    if joined is not None:
        try:
            yield joined
        except BaseException as exc:
            await _rollback_to_op(joined)
            if isinstance(exc, asyncpg.UniqueViolationError):
                raise UniqueViolation(exc.constraint_name or "") from exc
            raise
        return
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                yield conn
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolation(exc.constraint_name or "") from exc


# ------------------------------------------------------------ group commit

_BATCH: contextvars.ContextVar[tuple[asyncpg.Pool, asyncpg.Connection, asyncio.Task[Any] | None, Any] | None] = (
    contextvars.ContextVar("i9lyfe_group_commit", default=None)
)


def _joined(pool: asyncpg.Pool) -> asyncpg.Connection | None:
    """The group commit's connection if this task runs one of its ops on ``pool`` (a task the op spawned gets
    a connection of its own: one connection never runs two statements at once)."""
    bound = _BATCH.get()
    if bound is None or bound[0] is not pool or bound[2] is not asyncio.current_task():
        return None
    return bound[1]


class _Joined:
    """``pool.acquire()`` of an op inside a group commit: the batch's connection, not released on exit."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def __aenter__(self) -> asyncpg.Connection:
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __await__(self) -> Any:
        async def conn() -> asyncpg.Connection:
            return self.conn

        return conn().__await__()


_LOCK_CONFLICTS = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.LockNotAvailableError,
)


def is_lock_conflict(exc: BaseException) -> bool:
    """The statement lost a lock conflict with another transaction (a deadlock it was chosen to break): the same
    work succeeds when tried again."""
    return isinstance(exc, _LOCK_CONFLICTS)


_OP_SAVEPOINT = "i9lyfe_op"


async def _rollback_to_op(conn: asyncpg.Connection) -> None:
    """Roll the running op back to its savepoint. When that cannot be done (the connection was lost, or a statement
    is still being cancelled) the error that got us here is the one that counts: the batch then fails as a whole
    and its connection is closed, never reused (``group_commit``)."""
    if conn.is_closed():
        return
    try:
        await conn.execute(f"ROLLBACK TO SAVEPOINT {_OP_SAVEPOINT}")  # the savepoint stays open, empty
    except Exception:
        log.debug("rollback to the op's savepoint failed", exc_info=True)


# Counter columns that many writers share (a followee's followers, a hashtag's posts): table -> (key column, its
# SQL type, the columns that may be added to, what else an increase sets). Names here are code, never input.
SHARED_COUNTERS: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "users": ("id", "bigint", ("followers_count", "following_count", "posts_count"), ""),
    "hashtags": (
        "tag",
        "text",
        ("posts_count",),
        "last_used_at = CASE WHEN d.c0 > 0 THEN now() ELSE t.last_used_at END",
    ),
}


async def add_to_counters(conn: asyncpg.Connection, table: str, deltas: Sequence[tuple[Any, str, int]]) -> None:
    """Add ``(key, column, delta)`` to shared counter rows of ``table`` (``SHARED_COUNTERS``). Inside an op of a
    group commit they are kept until the end of the batch, summed per row, and applied in key order just before
    the commit (``GroupCommit.flush``): rows every shard writes are then locked only for the commit, and in one
    order, so two shards' batches neither wait for each other's whole batch nor deadlock. Elsewhere: at once, in key
    order. Nothing in the op may read these columns back (they lag until the commit)."""
    bound = _BATCH.get()
    if bound is not None and bound[1] is conn and bound[3] is not None:
        bound[3].defer(table, deltas)
        return
    await _apply_counters(conn, table, _summed(deltas))


def _summed(deltas: Sequence[tuple[Any, str, int]]) -> dict[Any, dict[str, int]]:
    rows: dict[Any, dict[str, int]] = {}
    for key, column, delta in deltas:
        row = rows.setdefault(key, {})
        row[column] = row.get(column, 0) + delta
    return rows


async def _apply_counters(conn: asyncpg.Connection, table: str, rows: dict[Any, dict[str, int]]) -> None:
    key, key_type, columns, touch = SHARED_COUNTERS[table]
    used = [c for c in columns if any(r.get(c) for r in rows.values())]
    if not used:
        return
    keys = sorted(rows)
    # Lock the rows in key order first (an UPDATE ... FROM may visit them in any order).
    await conn.execute(
        f"SELECT 1 FROM {table} WHERE {key} = ANY($1::{key_type}[]) ORDER BY {key} FOR NO KEY UPDATE", keys
    )
    arrays = [[rows[k].get(c, 0) for k in keys] for c in used]
    sets = [f"{c} = t.{c} + d.c{i}" for i, c in enumerate(used)]
    if touch and used[0] == columns[0]:
        sets.append(touch)
    unnest = ", ".join(f"${i + 2}::int[]" for i in range(len(used)))
    names = ", ".join(f"c{i}" for i in range(len(used)))
    await conn.execute(
        f"UPDATE {table} AS t SET {', '.join(sets)} FROM unnest($1::{key_type}[], {unnest}) AS d(k, {names}) "
        f"WHERE t.{key} = d.k",
        keys,
        *arrays,
    )


class GroupCommit:
    """One PostgreSQL transaction for a batch of ops (DESIGN.md 2b): each op runs in a savepoint of its own, so an
    op that fails is rolled back alone, and the batch commits once. Ops run one after another (one connection);
    what an op writes is seen by the ops after it. Made by ``group_commit``.

    Every op that writes takes a subtransaction id; past 64 in one transaction PostgreSQL's per-backend cache of
    them overflows and every snapshot elsewhere gets slower, so a batch holds at most ``MAX_OPS``."""

    MAX_OPS = 60

    def __init__(self, pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
        self.pool = pool
        self.conn = conn
        self.ops = 0
        self._open = False  # the savepoint of the op before is still open: released with the next one's start
        self._counters: dict[str, dict[Any, dict[str, int]]] = {}  # deferred shared counters (add_to_counters)
        self._op_counters: list[tuple[str, Sequence[tuple[Any, str, int]]]] = []  # the running op's

    def defer(self, table: str, deltas: Sequence[tuple[Any, str, int]]) -> None:
        self._op_counters.append((table, deltas))

    async def flush(self) -> None:
        """Apply the batch's deferred shared counters (each table's rows in key order), before the commit."""
        counters, self._counters = self._counters, {}
        for table in sorted(counters):
            await _apply_counters(self.conn, table, counters[table])

    @asynccontextmanager
    async def op(self) -> AsyncIterator[None]:
        """Run one op of the batch: its statements on ``pool`` join the batch, inside a savepoint; an exception
        rolls the op back to it and propagates. Each op costs one round trip of its own for this: the savepoint
        of the op before is released in the same message that opens this one's, and the last one's by COMMIT."""
        token = _BATCH.set((self.pool, self.conn, asyncio.current_task(), self))
        self.ops += 1
        self._op_counters = []
        try:
            if self._open:
                await self.conn.execute(f"RELEASE SAVEPOINT {_OP_SAVEPOINT}; SAVEPOINT {_OP_SAVEPOINT}")
            else:
                await self.conn.execute(f"SAVEPOINT {_OP_SAVEPOINT}")
            self._open = True
            try:
                yield
            except BaseException:
                await _rollback_to_op(self.conn)
                raise
            for table, deltas in self._op_counters:  # the op stands: its counters join the batch's
                rows = self._counters.setdefault(table, {})
                for key, column, delta in deltas:
                    row = rows.setdefault(key, {})
                    row[column] = row.get(column, 0) + delta
        finally:
            self._op_counters = []
            _BATCH.reset(token)


@asynccontextmanager
async def group_commit(pool: asyncpg.Pool) -> AsyncIterator[GroupCommit]:
    """Open a batch transaction on one connection of ``pool``; it commits when the block ends (and rolls back, with
    every op in it, when the block raises: the commit itself failed, or the connection was lost)."""
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                yield GroupCommit(pool, conn)
        except BaseException:
            # The batch failed as a whole (the commit, the connection, a cancellation): the connection's state is
            # not known, so it is closed rather than handed to the next user of the pool (which would find a
            # statement still in progress on it). The pool opens another on demand.
            conn.terminate()
            raise
