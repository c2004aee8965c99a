"""Group commit (DESIGN.md 2b) in the shard host, in-process against real PostgreSQL and Redis (no Ray):

* the ops of one batch share one transaction (one ``txid``), each in a savepoint: an op that wrote and then failed
  is rolled back alone, the rest of the batch commits;
* for every write op of both kinds, a failing instance inside a batch fails alone: the ops before and after it
  commit and their events are delivered;
* the ops of one entity keep their order under batching (queued in arrival order, across concurrent calls);
* a batch whose commit fails fails every op in it, and the chat entities reload what memory may hold ahead of
  storage.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import asyncpg
import pytest

from actors.runtime import shard_counters
from actors.runtime.host import Done, ShardHost, ShardKind
from actors.runtime.shards import ChatShardCore, UserShardCore
from domain import ops
from domain.errors import DomainError, NotFound
from storage import chats as chat_store
from storage import db, ids
from storage import posts as post_store
from storage import users as user_store
from storage.config import Settings
from tests.actors.in_process import InProcess
from tests.conftest import REDIS_URL, TEST_JWT_SECRET
from tests.storage.fresh_db import fresh_database

R = TypeVar("R")


# ------------------------------------------------------------ a test kind whose ops write rows


@dataclass
class Ledger:
    entity_id: int
    seen: list[int] = field(default_factory=list)
    loaded: bool = True

    def unload(self) -> None:
        self.loaded = False


class LedgerOp(ops.Op[R], frozen=True, kw_only=True):
    KIND: ClassVar[str] = "ledger"
    ledger: int

    @property
    def entity(self) -> int:
        return self.ledger


class Write(LedgerOp[int], frozen=True, kw_only=True):
    """Insert a row (in a transaction of the handler's own, and once more with a plain pool statement), then
    fail if ``fail``: both rows must vanish with the op."""

    n: int
    fail: bool = False


class Update(LedgerOp[int], frozen=True, kw_only=True):
    """Update rows ``first`` then ``then`` of the ledger table, pausing between: two shards doing it in opposite
    orders deadlock."""

    first: int
    then: int
    pause: float


class LedgerOps:
    def __init__(self, pool: Any, table: str) -> None:
        self.pool = pool
        self.table = table

    async def write(self, state: Ledger, op: Write) -> Done[int]:
        async with db.transaction(self.pool) as conn:
            await conn.execute(f"INSERT INTO {self.table} (ledger, n, via) VALUES ($1, $2, 'tx')", op.ledger, op.n)
        await self.pool.execute(f"INSERT INTO {self.table} (ledger, n, via) VALUES ($1, $2, 'pool')", op.ledger, op.n)
        if op.fail:
            raise NotFound("This op fails after writing.")
        state.seen.append(op.n)
        txid: int = await self.pool.fetchval("SELECT txid_current()")
        return Done(txid, effects=[op.n])

    async def update(self, state: Ledger, op: Update) -> Done[int]:
        await self.pool.execute(f"UPDATE {self.table} SET via = 'updated' WHERE n = $1", op.first)
        await asyncio.sleep(op.pause)
        await self.pool.execute(f"UPDATE {self.table} SET via = 'updated' WHERE n = $1", op.then)
        state.seen.append(op.first)
        return Done(op.first)


class LedgerHost(ShardHost[Ledger]):
    def __init__(self, kind: ShardKind[Ledger], settings: Settings) -> None:
        super().__init__(kind, 0, settings)
        self.finished: list[list[Any]] = []  # the effects of each after-commit call

    async def finish(self, dones: Sequence[Done[Any]]) -> None:
        self.finished.append([effect for done in dones for effect in done.effects])


@pytest.fixture
def settings(database_url: str, redis_prefix: str) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=REDIS_URL,
        redis_prefix=redis_prefix,
        jwt_secret=TEST_JWT_SECRET,
        user_shards=1,
        chat_shards=1,
    )


@pytest.fixture
async def ledger(settings: Settings) -> AsyncIterator[tuple[LedgerHost, str]]:
    table = f"ledger_{uuid.uuid4().hex[:12]}"
    kind: ShardKind[Ledger] = ShardKind(
        name="ledger",
        state=Ledger,
        keep=lambda s: False,
        ops=LedgerOp,
        handlers=lambda host: [LedgerOps(host.services.pool, table)],
        stale=Ledger.unload,
    )
    host = LedgerHost(kind, settings)
    await host.ready()
    await host.services.pool.execute(f"CREATE TABLE {table} (ledger bigint, n int, via text)")
    yield host, table
    await host.services.pool.execute(f"DROP TABLE {table}")
    await host.close()


async def rows(host: ShardHost[Any], table: str) -> list[tuple[int, int, str]]:
    found = await host.services.pool.fetch(f"SELECT ledger, n, via FROM {table} ORDER BY ledger, n, via")
    return [(r["ledger"], r["n"], r["via"]) for r in found]


async def test_a_batch_is_one_transaction_and_an_op_that_wrote_then_failed_is_rolled_back_alone(
    ledger: tuple[LedgerHost, str],
) -> None:
    host, table = ledger
    batch = [Write(ledger=1, n=1), Write(ledger=2, n=2, fail=True), Write(ledger=1, n=3), Write(ledger=3, n=4)]
    results = await host.call_batch(batch)  # type: ignore[arg-type]
    assert [status for status, _ in results] == ["ok", "err", "ok", "ok"]
    assert DomainError.from_wire(results[1][1]).code == "not_found"
    assert len({value for status, value in results if status == "ok"}) == 1  # one txid: one transaction
    assert await rows(host, table) == [
        (1, 1, "pool"),
        (1, 1, "tx"),
        (1, 3, "pool"),
        (1, 3, "tx"),
        (3, 4, "pool"),
        (3, 4, "tx"),
    ]
    assert host.finished == [[1, 3, 4]]  # one after-commit for the batch, in the ops' order, the failed op left out
    assert (host.group_commits, host.group_ops) == (1, 3)


async def test_the_ops_of_one_entity_keep_their_order_across_concurrent_calls(ledger: tuple[LedgerHost, str]) -> None:
    host, table = ledger
    calls = [[Write(ledger=k % 3, n=call * 10 + k) for k in range(10)] for call in range(20)]
    results = await asyncio.gather(*(host.call_batch(batch) for batch in calls))  # type: ignore[arg-type]
    assert all(status == "ok" for answer in results for status, _ in answer)
    for entity in range(3):
        sent = [op.n for batch in calls for op in batch if op.ledger == entity]
        state = host.table.peek(entity)
        assert state is not None and state.seen == sent  # in arrival order
    assert len(await rows(host, table)) == 2 * 200
    assert host.group_commits < 20, host.group_commits  # calls that arrived while a batch ran made bigger batches


async def test_a_batch_whose_commit_fails_fails_every_op_and_its_entities_reload(
    ledger: tuple[LedgerHost, str],
) -> None:
    host, table = ledger
    pool = host.services.pool
    # A deferred unique constraint is checked at COMMIT, after every op of the batch succeeded in its savepoint.
    await pool.execute(f"ALTER TABLE {table} ADD UNIQUE (ledger, n, via) DEFERRABLE INITIALLY DEFERRED")
    await pool.execute(f"INSERT INTO {table} (ledger, n, via) VALUES (9, 7, 'tx')")
    before = await rows(host, table)
    finished = len(host.finished)
    answer = await host.call_batch([Write(ledger=5, n=2), Write(ledger=9, n=7)])  # type: ignore[list-item]
    assert [status for status, _ in answer] == ["err", "err"]  # the commit failed: all of the batch with it
    assert await rows(host, table) == before
    for entity in (5, 9):
        state = host.table.peek(entity)
        assert state is not None and not state.loaded  # told to reload what it holds from storage
    assert len(host.finished) == finished  # nothing of the failed batch went to the after-commit path
    # The next batch commits as usual.
    assert [s for s, _ in await host.call_batch([Write(ledger=5, n=3)])] == ["ok"]  # type: ignore[list-item]


async def test_an_op_that_loses_a_deadlock_to_another_shard_runs_again_in_the_next_batch(
    ledger: tuple[LedgerHost, str], settings: Settings
) -> None:
    host, table = ledger
    other = LedgerHost(host.kind, settings)  # a second shard of the kind, in this process
    await other.ready()
    try:
        await host.services.pool.execute(f"INSERT INTO {table} (ledger, n, via) VALUES (0, 100, 'a'), (0, 200, 'b')")
        # Each holds one row in its batch's transaction and wants the other's: PostgreSQL breaks the deadlock
        # by failing one statement; that op is rolled back to its savepoint and runs again in its shard's next
        # batch, with the op of the same entity queued behind it, in order.
        one, two = await asyncio.gather(
            host.call_batch([Update(ledger=1, first=100, then=200, pause=0.3), Write(ledger=1, n=5)]),  # type: ignore[list-item]
            other.call_batch([Update(ledger=2, first=200, then=100, pause=0.3)]),  # type: ignore[list-item]
        )
        assert [s for s, _ in one + two] == ["ok", "ok", "ok"], one + two
        retried = [h for h in (host, other) if h.group_commits > 1]
        assert len(retried) == 1  # the deadlock's victim committed in a second batch
        assert shard_counters.snapshot().get(shard_counters.GROUP_RETRIES, 0) >= 1
        first = host.table.peek(1)
        assert first is not None and first.seen == [100, 5]  # the entity's ops kept their order
    finally:
        await other.close()


# ------------------------------------------------------------ every write op of both kinds


@dataclass
class World:
    users: list[int]
    usernames: list[str]
    post: int
    comment: int
    chat: int
    message: int


async def a_user(conn: Any) -> tuple[int, str]:
    uid = ids.new_id()
    name = f"g{uid}"[-20:]
    await user_store.insert_user(
        conn,
        user_id=uid,
        username=name,
        email=f"{name}@example.com",
        name="G",
        bio="",
        birthday=dt.date(2000, 1, 31),
        password_hash="x",
    )
    return uid, name


@pytest.fixture
async def cores(settings: Settings) -> AsyncIterator[tuple[UserShardCore, ChatShardCore]]:
    users, chats = UserShardCore(0, settings), ChatShardCore(0, settings)
    await users.ready()
    await chats.ready()
    yield users, chats
    await users.close()
    await chats.close()


async def a_world(users: UserShardCore, chats: ChatShardCore) -> World:
    async with db.transaction(users.services.pool) as conn:
        people = [await a_user(conn) for _ in range(3)]
        post = ids.new_id()
        await post_store.insert_post(conn, post, people[1][0], "photo", "a post", dt.datetime.now(dt.UTC))
        row, _ = await chat_store.get_or_create_chat(conn, ids.new_id(), people[0][0], people[1][0])
    world = World([p[0] for p in people], [p[1] for p in people], post, 0, int(row["id"]), 0)
    comment = await one(users, ops.AddComment(user_id=world.users[2], post_id=post, text="first"))
    sent = await one(
        chats, ops.SendMessage(chat_id=world.chat, user_id=world.users[1], client_id="c0", type="text", text="hi")
    )
    world.comment, world.message = int(comment.id), int(sent[0].id)
    return world


async def one(host: ShardHost[Any], op: ops.Op[Any]) -> Any:
    [(status, value)] = await host.call_batch([op])
    assert status == "ok", DomainError.from_wire(value)
    return value


MISSING = 1  # no post, comment or message has this id

# Per write op: a valid instance (given the world) and one that fails (an object that does not exist).
UserCase = Callable[[World, int], ops.UserOp[Any]]
USER_CASES: dict[type[ops.UserOp[Any]], tuple[UserCase, UserCase]] = {
    ops.ReactToPost: (
        lambda w, u: ops.ReactToPost(user_id=u, post_id=w.post, emoji="🔥"),
        lambda w, u: ops.ReactToPost(user_id=u, post_id=MISSING, emoji="🔥"),
    ),
    ops.UnreactToPost: (
        lambda w, u: ops.UnreactToPost(user_id=u, post_id=w.post),
        lambda w, u: ops.UnreactToPost(user_id=u, post_id=MISSING),
    ),
    ops.SetRepost: (
        lambda w, u: ops.SetRepost(user_id=u, post_id=w.post, on=True),
        lambda w, u: ops.SetRepost(user_id=u, post_id=MISSING, on=True),
    ),
    ops.SetSave: (
        lambda w, u: ops.SetSave(user_id=u, post_id=w.post, on=True),
        lambda w, u: ops.SetSave(user_id=u, post_id=MISSING, on=True),
    ),
    ops.AddComment: (
        lambda w, u: ops.AddComment(user_id=u, post_id=w.post, text="nice"),
        lambda w, u: ops.AddComment(user_id=u, post_id=MISSING, text="nice"),
    ),
    ops.DeleteComment: (
        lambda w, u: ops.DeleteComment(user_id=w.users[2], comment_id=w.comment),
        lambda w, u: ops.DeleteComment(user_id=u, comment_id=MISSING),
    ),
    ops.ReactToComment: (
        lambda w, u: ops.ReactToComment(user_id=u, comment_id=w.comment, emoji="👍"),
        lambda w, u: ops.ReactToComment(user_id=u, comment_id=MISSING, emoji="👍"),
    ),
    ops.UnreactToComment: (
        lambda w, u: ops.UnreactToComment(user_id=u, comment_id=w.comment),
        lambda w, u: ops.UnreactToComment(user_id=u, comment_id=MISSING),
    ),
    ops.DeletePost: (
        lambda w, u: ops.DeletePost(user_id=w.users[1], post_id=w.post),
        lambda w, u: ops.DeletePost(user_id=u, post_id=MISSING),
    ),
    ops.CreatePost: (
        lambda w, u: ops.CreatePost(user_id=u, type="photo", caption="x", media_ids=[]),  # refused: no media
        lambda w, u: ops.CreatePost(user_id=u, type="photo", caption="x", media_ids=[MISSING]),
    ),
    ops.Follow: (
        lambda w, u: ops.Follow(user_id=u, username=w.usernames[1]),
        lambda w, u: ops.Follow(user_id=u, username="nobody_is_called_this"),
    ),
    ops.Unfollow: (
        lambda w, u: ops.Unfollow(user_id=u, username=w.usernames[1]),
        lambda w, u: ops.Unfollow(user_id=u, username="nobody_is_called_this"),
    ),
    ops.UpdateProfile: (
        lambda w, u: ops.UpdateProfile(user_id=u, changes={"bio": "batched"}),
        lambda w, u: ops.UpdateProfile(user_id=u, changes={"username": w.usernames[1]}),  # taken
    ),
    ops.SetAvatar: (
        lambda w, u: ops.SetAvatar(user_id=u, media_id=None),
        lambda w, u: ops.SetAvatar(user_id=u, media_id=MISSING),
    ),
    ops.FollowInterest: (
        lambda w, u: ops.FollowInterest(user_id=u, slug="travel", on=True),
        lambda w, u: ops.FollowInterest(user_id=u, slug="nonexistent-interest", on=True),
    ),
    ops.GiveExploreFeedback: (
        lambda w, u: ops.GiveExploreFeedback(user_id=u, post_id=w.post, signal="more"),
        lambda w, u: ops.GiveExploreFeedback(user_id=u, post_id=MISSING, signal="more"),
    ),
    ops.SetRecommendationKnobs: (
        lambda w, u: ops.SetRecommendationKnobs(user_id=u, per_author_cap=3),
        # no such user: a foreign-key violation inside the op's savepoint (a statement error, not a check)
        lambda w, u: ops.SetRecommendationKnobs(user_id=MISSING, per_author_cap=3),
    ),
}
ChatCase = Callable[[World, int], ops.ChatOp[Any]]
CHAT_CASES: dict[type[ops.ChatOp[Any]], tuple[ChatCase, ChatCase]] = {
    ops.SendMessage: (
        lambda w, n: ops.SendMessage(chat_id=w.chat, user_id=w.users[0], client_id=f"k{n}", type="text", text="yo"),
        lambda w, n: ops.SendMessage(chat_id=w.chat, user_id=w.users[2], client_id=f"x{n}", type="text", text="no"),
    ),
    ops.EditMessage: (
        lambda w, n: ops.EditMessage(chat_id=w.chat, user_id=w.users[1], message_id=w.message, text=f"edit {n}"),
        lambda w, n: ops.EditMessage(chat_id=w.chat, user_id=w.users[1], message_id=MISSING, text="edit"),
    ),
    ops.ReactToMessage: (
        lambda w, n: ops.ReactToMessage(chat_id=w.chat, user_id=w.users[0], message_id=w.message, emoji="👍"),
        lambda w, n: ops.ReactToMessage(chat_id=w.chat, user_id=w.users[0], message_id=MISSING, emoji="👍"),
    ),
    ops.UnreactToMessage: (
        lambda w, n: ops.UnreactToMessage(chat_id=w.chat, user_id=w.users[0], message_id=w.message),
        lambda w, n: ops.UnreactToMessage(chat_id=w.chat, user_id=w.users[0], message_id=MISSING),
    ),
    ops.ReportProgress: (
        lambda w, n: ops.ReportProgress(chat_id=w.chat, user_id=w.users[0], kind="read", seq=1),
        lambda w, n: ops.ReportProgress(chat_id=w.chat, user_id=w.users[2], kind="read", seq=1),
    ),
    ops.DeleteMessage: (
        lambda w, n: ops.DeleteMessage(chat_id=w.chat, user_id=w.users[1], message_id=w.message, scope="everyone"),
        lambda w, n: ops.DeleteMessage(chat_id=w.chat, user_id=w.users[1], message_id=MISSING, scope="everyone"),
    ),
}


def test_every_write_op_has_a_case() -> None:
    grouped = [t for t in ops.op_types(ops.UserOp) + ops.op_types(ops.ChatOp) if t.GROUP_COMMIT and t is not ops.Touch]
    alone = {ops.CreatePost, ops.DeletePost}  # writes that run alone (domain/ops.py: the search index's shared rows)
    assert not any(t.GROUP_COMMIT for t in alone)
    assert set(grouped) | alone == set(USER_CASES) | set(CHAT_CASES)


async def stream_types(core: ShardHost[Any], user_id: int) -> list[str]:
    entries = await core.services.redis.xrange(core.services.keys.events(user_id))
    return [fields[b"t"].decode() for _, fields in entries]


@pytest.mark.parametrize("op_type", list(USER_CASES), ids=lambda t: t.__name__)
async def test_a_failing_user_op_inside_a_batch_fails_alone(
    cores: tuple[UserShardCore, ChatShardCore], op_type: type[ops.UserOp[Any]]
) -> None:
    users, chats = cores
    world = await a_world(users, chats)
    good, bad = USER_CASES[op_type]
    actor = world.users[0]
    # Around the failing op: a reaction to the post (it notifies its author) and a comment (it notifies too).
    before = ops.ReactToPost(user_id=world.users[2], post_id=world.post, emoji="😂")
    after = ops.AddComment(user_id=world.users[2], post_id=world.post, text=f"after {op_type.__name__}")
    commits = users.group_commits
    if op_type.GROUP_COMMIT:
        results = await users.call_batch([before, bad(world, actor), after, good(world, actor)])
    else:  # it runs alone, at once, beside the batch: its good instance goes after, not racing the batch
        results = await users.call_batch([before, bad(world, actor), after])
        results += await users.call_batch([good(world, actor)])
    assert users.group_commits == commits + 1  # one batch
    status = [s for s, _ in results]
    assert status[:3] == ["ok", "err", "ok"], [DomainError.from_wire(v) for s, v in results if s == "err"]
    expected = (500,) if op_type is ops.SetRecommendationKnobs else (404, 409, 422)
    assert DomainError.from_wire(results[1][1]).http_status in expected
    if op_type is not ops.CreatePost:  # a photo post without media is refused at any time: both fail
        assert status[3] == "ok", DomainError.from_wire(results[3][1])
    pool = users.services.pool
    assert await pool.fetchval(
        "SELECT count(*) FROM post_reactions WHERE post_id = $1 AND user_id = $2", world.post, world.users[2]
    ) == (0 if op_type is ops.DeletePost else 1)
    assert await pool.fetchval(
        "SELECT count(*) FROM comments WHERE author_id = $1 AND text = $2", world.users[2], after.text
    ) == (0 if op_type is ops.DeletePost else 1)
    # Their notifications reached the post's author's stream, delivered after the commit.
    if op_type is not ops.DeletePost:
        assert (await stream_types(users, world.users[1])).count("notification") >= 2


@pytest.mark.parametrize("op_type", list(CHAT_CASES), ids=lambda t: t.__name__)
async def test_a_failing_chat_op_inside_a_batch_fails_alone(
    cores: tuple[UserShardCore, ChatShardCore], op_type: type[ops.ChatOp[Any]]
) -> None:
    users, chats = cores
    world = await a_world(users, chats)
    good, bad = CHAT_CASES[op_type]
    before = ops.SendMessage(chat_id=world.chat, user_id=world.users[0], client_id="before", type="text", text="a")
    after = ops.SendMessage(chat_id=world.chat, user_id=world.users[1], client_id="after", type="text", text="b")
    results = await chats.call_batch([before, bad(world, 1), after, good(world, 2)])
    status = [s for s, _ in results]
    assert status == ["ok", "err", "ok", "ok"], [DomainError.from_wire(v) for s, v in results if s == "err"]
    seqs = [results[0][1][0].seq, results[2][1][0].seq]
    assert seqs == [2, 3]  # no gap where the failed op was, in the batch's order
    stored = await chats.services.pool.fetch(
        "SELECT seq, client_id FROM messages WHERE chat_id = $1 ORDER BY seq", world.chat
    )
    assert [r["seq"] for r in stored][:3] == [1, 2, 3]
    # Both members' streams got the messages in seq order.
    for member in world.users[:2]:
        assert (await stream_types(users, member)).count("chat.message") >= 3


# ------------------------------------------------------------ many writers, several shards: nothing acknowledged lost


async def test_reaction_storms_over_four_shards_leave_exactly_what_was_acknowledged(settings: Settings) -> None:
    from actors.runtime.client import ShardClient

    many = dataclasses.replace(settings, user_shards=4)
    shards = [UserShardCore(k, many) for k in range(4)]
    for core in shards:
        await core.ready()
    try:
        pool = shards[0].services.pool
        async with db.transaction(pool) as conn:
            people = [(await a_user(conn))[0] for _ in range(40)]
            posts = []
            for k in range(6):
                post = ids.new_id()
                await post_store.insert_post(conn, post, people[k], "photo", "storm", dt.datetime.now(dt.UTC))
                posts.append(post)
        client = ShardClient([InProcess(c) for c in shards], max_batch=64)
        rng = random.Random(21)
        plans = {u: [(rng.choice(posts), rng.choice(["👍", "🔥", None])) for _ in range(12)] for u in people}
        expected: dict[tuple[int, int], str | None] = {}

        async def run(user: int) -> None:
            for post, emoji in plans[user]:
                if emoji is None:
                    await client.call(ops.UnreactToPost(user_id=user, post_id=post))
                else:
                    await client.call(ops.ReactToPost(user_id=user, post_id=post, emoji=emoji))
                expected[(user, post)] = emoji

        await asyncio.gather(*(run(u) for u in people))
        rows = await pool.fetch("SELECT user_id, post_id, emoji FROM post_reactions WHERE post_id = ANY($1)", posts)
        assert {(r["user_id"], r["post_id"]): r["emoji"] for r in rows} == {
            key: emoji for key, emoji in expected.items() if emoji is not None
        }
        counted = await pool.fetch(
            """SELECT post_id, sum(n)::int AS n FROM post_counts WHERE post_id = ANY($1) AND counter = 'reactions'
               GROUP BY 1""",
            posts,
        )
        per_post = collections.Counter(post for (_, post), emoji in expected.items() if emoji is not None)
        assert {r["post_id"]: r["n"] for r in counted if r["n"]} == dict(per_post)
        assert sum(core.group_commits for core in shards) < len(people) * 12  # batches formed
    finally:
        for core in shards:
            await core.close()


async def _commits(dsn: str) -> int:
    """The database's committed transactions as PostgreSQL's statistics have them (a backend reports its own when
    it exits, so every pool whose work is counted is closed first)."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"))
    finally:
        await conn.close()


async def test_at_64_writes_in_flight_postgresql_commits_fewer_transactions_than_writes(redis_prefix: str) -> None:
    from actors.runtime.client import ShardClient

    async with fresh_database("i9group") as dsn:
        seed = await asyncpg.connect(dsn)
        try:
            now = dt.datetime.now(dt.UTC)
            people = list(range(10_001, 10_201))
            await seed.executemany(
                """INSERT INTO users (id, username, email, name, bio, birthday, password_hash)
                   VALUES ($1, $2, $2 || '@example.com', 'G', '', '2000-01-31', 'x')""",
                [(u, f"g{u}") for u in people],
            )
            posts = list(range(20_001, 20_021))
            await seed.executemany(
                "INSERT INTO posts (id, author_id, type, caption, created_at) VALUES ($1, $2, 'photo', 'p', $3)",
                [(p, people[i], now) for i, p in enumerate(posts)],
            )
        finally:
            await seed.close()
        settings = Settings(
            database_url=dsn,
            redis_url=REDIS_URL,
            redis_prefix=redis_prefix + "group64:",
            jwt_secret=TEST_JWT_SECRET,
            user_shards=4,
        )
        before = await _commits(dsn)
        shards = [UserShardCore(k, settings) for k in range(4)]
        client = ShardClient([InProcess(c) for c in shards], max_batch=64)
        rng = random.Random(64)
        writes = [
            ops.ReactToPost(user_id=rng.choice(people), post_id=rng.choice(posts), emoji=rng.choice(["👍", "🔥"]))
            for _ in range(1280)
        ]
        gate = asyncio.Semaphore(64)

        async def write(op: ops.ReactToPost) -> None:
            async with gate:
                await client.call(op)

        try:
            await asyncio.gather(*(write(op) for op in writes))
        finally:
            for core in shards:
                await core.close()  # the pools' backends exit and report their commits
        await asyncio.sleep(0.5)
        commits = await _commits(dsn) - before
        batches = sum(core.group_commits for core in shards)
        print(f"{len(writes)} writes at 64 in flight: {commits} PostgreSQL commits, {batches} group commits")
        assert batches < len(writes) / 4
        assert commits < len(writes) / 2, commits  # each group commit one transaction (plus background jobs')


async def test_follow_storms_over_four_shards_keep_the_shared_counters_equal_to_the_rows(settings: Settings) -> None:
    """A followee's followers_count is a row every shard writes: its increments wait for the end of each batch and
    go in id order (storage/db.py add_to_counters), so the batches neither deadlock nor drift."""
    from actors.runtime.client import ShardClient

    many = dataclasses.replace(settings, user_shards=4)
    shards = [UserShardCore(k, many) for k in range(4)]
    for core in shards:
        await core.ready()
    try:
        pool = shards[0].services.pool
        async with db.transaction(pool) as conn:
            people = [await a_user(conn) for _ in range(30)]
        client = ShardClient([InProcess(c) for c in shards], max_batch=64)
        rng = random.Random(7)
        few = people[:3]  # popular: everyone follows and unfollows them

        async def run(uid: int) -> None:
            for _ in range(8):
                _, name = rng.choice(few if rng.random() < 0.7 else people)
                if name.endswith(str(uid)[-5:]):
                    continue
                if rng.random() < 0.3:
                    await client.call(ops.Unfollow(user_id=uid, username=name))
                else:
                    await client.call(ops.Follow(user_id=uid, username=name))

        await asyncio.gather(*(run(uid) for uid, _ in people))
        ids_ = [uid for uid, _ in people]
        drift = await pool.fetch(
            """SELECT u.id FROM users u
               WHERE u.id = ANY($1) AND (
                   u.followers_count <> (SELECT count(*) FROM follows f WHERE f.followee_id = u.id)
                   OR u.following_count <> (SELECT count(*) FROM follows f WHERE f.follower_id = u.id))""",
            ids_,
        )
        assert drift == []
        assert await pool.fetchval("SELECT count(*) FROM follows WHERE follower_id = ANY($1)", ids_) > 0
    finally:
        for core in shards:
            await core.close()
