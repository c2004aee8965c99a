"""One shard host for every shard kind (users, chats): what a shard process does for its entities.

A shard kind is its plain state class plus its op handlers (``ShardKind``); the host gives it:
* an entity table with lazy activation, idle eviction and one asyncio lock per entity (actors/runtime/entities.py);
* an op table derived from the handlers' types (``op_table``): each handler is a coroutine method whose ``op``
  parameter is annotated with its op struct (domain/ops.py), so an op is dispatched by its type, never by a name,
  and a kind whose ops lack a handler refuses to start;
* group commit (DESIGN.md 2b): ops that write (``GROUP_COMMIT``, domain/ops.py) go into the shard's queue, and
  one drain task takes everything queued as one batch: one PostgreSQL transaction (storage/db.py
  ``group_commit``), each op in a savepoint of its own, under its entity's lock, in arrival order (so the ops of
  one entity stay in order); then one after-commit for the whole batch (one delivery script, one Redis pipeline
  of effects), then the answers. A batch never waits to fill: the drain starts on the next loop turn, and what
  arrives while a batch runs makes the next one, so under load batches grow and the cost per op falls. Ops that
  only touch memory or Redis (sockets, presence, typing) run at once, concurrently. Errors come back as tuples,
  so one failing op never fails its batch; a commit that fails fails the ops of its batch, and their entities
  reload from storage (``ShardKind.stale``);
* the one after-commit path: a handler answers ``Done(result, events, effects)`` and the host hands the events
  and effects to the kind's ``finish`` (actors/after_commit.py) after the commit, for every op alike, then
  returns only the result;
* an epoch (new on every start: a restarted shard is told apart by the gateways);
* gateway registration, for kinds whose entities hold sockets (``tracks_gateways``): heartbeats, versioned
  re-registration through ``SyncGateway`` ops, and expiry of a gateway that went silent through ``ExpireGateway``;
* the process's services (PostgreSQL, Redis) made once, and the background loops the kind asks for.

Plain Python (no Ray import): tests run a host in-process; actors/runtime/shards.py is the Ray shell around it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import time
import typing
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from actors.runtime import shard_counters
from actors.runtime.entities import EntityTable
from actors.runtime.services import Services
from domain.errors import DomainError, Internal, Unavailable
from domain.ops import GATEWAY_OPS, ExpireGateway, GatewayOp, Op, SyncGateway, op_types
from storage import db
from storage.config import Settings
from storage.outage import OUTAGES, is_outage, unavailable_or_none

log = logging.getLogger("i9lyfe.shard")

S = TypeVar("S")

R = TypeVar("R")
Result = tuple[str, Any]
Handler = Callable[[Any, Any], Awaitable["Done[Any]"]]  # (state, op) -> Done
OpTable = Mapping[type[Op[Any]], Handler]

GATEWAY_TIMEOUT_S = 15.0
MAINTENANCE_S = 5.0
GROUP_MAX = db.GroupCommit.MAX_OPS  # ops in one group commit at most
GROUP_RETRIES = 3  # an op that lost this many lock conflicts (deadlocks with another shard's batch) answers 503


@dataclass(frozen=True)
class Done(Generic[R]):
    """What an op handler answers: its ``result`` for the caller, the outbox ``events`` its transaction staged,
    and the ``effects`` to carry out after commit (actors/after_commit.py says which there are)."""

    result: R
    events: Sequence[Any] = ()
    effects: Sequence[Any] = ()


@dataclass
class _Queued:
    """An op waiting for its group commit, and how often it lost a lock conflict."""

    op: Op[Any]
    future: asyncio.Future[Result]
    tries: int = 0


def _apply(fn: Handler, op: Op[Any], state: Any) -> Awaitable[Done[Any]]:
    return fn(state, op)


def op_table(handlers: Iterable[object]) -> dict[type[Op[Any]], Handler]:
    """The op table of these handler objects: every public coroutine method whose ``op`` parameter is annotated
    with an op struct handles that op type. Two handlers of one op type are an error."""
    table: dict[type[Op[Any]], Handler] = {}
    for obj in handlers:
        for name, function in inspect.getmembers(type(obj), inspect.iscoroutinefunction):
            if name.startswith("_"):
                continue
            op_type = typing.get_type_hints(function).get("op")
            if isinstance(op_type, type) and issubclass(op_type, Op):
                if op_type in table:
                    raise TypeError(f"two handlers of {op_type.__name__}: {table[op_type]} and {name}")
                table[op_type] = getattr(obj, name)
    return table


@dataclass(frozen=True)
class ShardKind(Generic[S]):
    """What makes one kind of shard: its name, its entity state and its operations."""

    name: str  # "user", "chat": the shard actor names are <name>-shard-<fingerprint>-<k>
    state: Callable[[int], S]  # a fresh (not yet activated) state for an entity id
    keep: Callable[[S], bool]  # an entity for which this is true is never evicted (e.g. it holds sockets)
    ops: type[Op[Any]]  # the base of this kind's op structs (domain/ops.py UserOp, ChatOp): each needs a handler
    handlers: Callable[[Any], Sequence[object]]  # the handler objects of a ready host (given the host), made once
    sockets_of: Callable[[S, str], int] | None = None  # sockets an entity holds on a gateway (gateway tracking)
    count: Callable[[Settings], int] = field(default=lambda s: s.user_shards)  # K, from the settings
    stale: Callable[[S], None] = field(default=lambda s: None)  # its batch did not commit: reload from storage

    @property
    def tracks_gateways(self) -> bool:
        return self.sockets_of is not None


class ShardHost(Generic[S]):
    """The shard core of one kind, without the Ray decorator."""

    def __init__(self, kind: ShardKind[S], index: int, settings: Settings) -> None:
        self.kind = kind
        self.index = index
        self.settings = settings
        self.epoch = uuid.uuid4().hex
        self.started = time.time()
        self.calls = 0
        self.batches = 0
        self.group_commits = 0  # batches committed (each one PostgreSQL transaction)
        self.group_ops = 0  # ops in them
        self._queue: deque[_Queued] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self.table: EntityTable[S] = EntityTable(kind.state, keep=kind.keep)
        self.gateway_seen: dict[str, float] = {}
        self.gateway_entities: dict[str, set[int]] = defaultdict(set)
        self._services: Services | None = None
        self._ops: OpTable | None = None
        self._init_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._jobs: list[tuple[str, float, Callable[[], Awaitable[Any]]]] = []
        self._daemons: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = []

    # ------------------------------------------------------------ start, services, background jobs

    def every(self, name: str, seconds: float, job: Callable[[], Awaitable[Any]]) -> None:
        """Run ``job`` every ``seconds`` once the host is ready (a failure is logged, the loop goes on)."""
        self._jobs.append((name, seconds, job))

    def daemon(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``run`` (a loop that never returns) once the host is ready; call it before then (``on_ready``)."""
        self._daemons.append((name, run))

    async def ready(self) -> OpTable:
        if self._ops is None:
            async with self._init_lock:
                if self._ops is None:
                    self._services = await Services.create(self.settings, pool_max=4)
                    await self.on_ready(self._services)
                    ops = self.op_table()
                    loop = asyncio.get_running_loop()
                    self._tasks = [loop.create_task(self._loop("maintenance", MAINTENANCE_S, self._maintain))]
                    self._tasks += [loop.create_task(self._loop(n, s, job)) for n, s, job in self._jobs]
                    self._tasks += [loop.create_task(run(), name=n) for n, run in self._daemons]
                    self._ops = ops
        return self._ops

    async def on_ready(self, services: Services) -> None:
        """For subclasses: set up what needs the services, before the first op runs."""

    def op_table(self) -> dict[type[Op[Any]], Handler]:
        """The kind's op table; every op struct of the kind has a handler, or the shard refuses to start."""
        table = op_table(self.kind.handlers(self))
        wanted = set(op_types(self.kind.ops))
        missing = sorted(t.__name__ for t in wanted - set(table))
        foreign = sorted(t.__name__ for t in set(table) - wanted)
        if missing or foreign:
            raise TypeError(
                f"{self.kind.name} shards: ops without a handler {missing}, handlers of other kinds' ops {foreign}"
            )
        if self.kind.tracks_gateways and not set(GATEWAY_OPS) <= set(table):
            raise TypeError(f"{self.kind.name} shards track gateways but lack the gateway ops")
        return table

    async def finish(self, dones: Sequence[Done[Any]]) -> None:
        """For subclasses: carry out committed ops' events and effects (actors/after_commit.py), in their order:
        a group commit's together. Runs before the next batch of the shard starts."""

    @property
    def services(self) -> Services:
        assert self._services is not None
        return self._services

    async def _loop(self, name: str, seconds: float, job: Callable[[], Awaitable[Any]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception as exc:
                if is_outage(exc):  # PostgreSQL or Redis down: counted, one warning per outage per process
                    OUTAGES.note(f"shard job {name!r} failed", exc, log)
                else:
                    log.exception("shard job failed", extra={"fields": {"job": name, "kind": self.kind.name}})

    async def _maintain(self) -> None:
        now = time.monotonic()
        for gateway, seen in list(self.gateway_seen.items()):
            if now - seen > GATEWAY_TIMEOUT_S:
                await self._expire_gateway(gateway)
        self.table.evict_idle()

    async def close(self) -> None:
        for task in [*self._tasks, *([self._drainer] if self._drainer is not None else [])]:
            task.cancel()
        if self._services is not None:
            await self._services.close()

    # ------------------------------------------------------------ calls

    async def ping(self, node: str | None = None) -> dict[str, Any]:
        """Who and where this shard is; ``node``: the cluster node it runs on, from the Ray shell (None in-process)."""
        self.calls += 1
        return {
            "kind": self.kind.name,
            "index": self.index,
            "pid": os.getpid(),
            "node": node,
            "calls": self.calls,
            "entities": len(self.table),
            "epoch": self.epoch,
            "started": self.started,
            "gateways": len(self.gateway_seen),
            "group_commits": self.group_commits,
            "group_ops": self.group_ops,
            "counters": shard_counters.snapshot(),  # for GET /metrics (actors/runtime/shard_counters.py)
        }

    async def call_batch(self, ops: list[Op[Any]]) -> list[Result]:
        table = await self.ready()
        self.batches += 1
        return list(await asyncio.gather(*(self._submit(table, op) for op in ops)))

    async def _submit(self, table: OpTable, op: Op[Any]) -> Result:
        if not op.GROUP_COMMIT:
            return await self._one(table, op)
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(op, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain(table))
        return await future

    async def _drain(self, table: OpTable) -> None:
        """Group-commit everything queued, batch after batch, until the queue is empty."""
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), GROUP_MAX))]
            try:
                retry = await self._group(table, batch)
            except BaseException as exc:  # cancelled (the shard is closing): nobody is left waiting
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("closing"))
                raise
            self._queue.extendleft(reversed(retry))  # first in the next batch, in their order

    async def _group(self, table: OpTable, batch: list[_Queued]) -> list[_Queued]:
        """One batch: every op in a savepoint of one transaction, then one after-commit for those that ran, then
        their answers. Answers the ops to run again in the next batch: those that lost a lock conflict with
        another shard's batch (a deadlock), and the ops of their entities behind them, to keep their order."""
        results: list[Result | None] = [None] * len(batch)
        done: list[tuple[int, Op[Any], Done[Any]]] = []
        retry: list[_Queued] = []
        waiting: set[int] = set()  # entities with an op to run again: their later ops wait too
        try:
            async with db.group_commit(self.services.pool) as group:
                for i, item in enumerate(batch):
                    op = item.op
                    if op.entity in waiting:
                        retry.append(item)
                        continue
                    self.calls += 1
                    fn = table.get(type(op))
                    if fn is None:
                        results[i] = ("err", Internal(f"{type(op).__name__} is no {self.kind.name} op").to_wire())
                        continue
                    try:
                        async with group.op():
                            outcome = await self.table.run(op.entity, functools.partial(_apply, fn, op))
                    except Exception as exc:
                        if db.is_lock_conflict(exc) and item.tries < GROUP_RETRIES:
                            shard_counters.count(shard_counters.GROUP_RETRIES)
                            item.tries += 1
                            retry.append(item)
                            waiting.add(op.entity)
                        else:
                            results[i] = self._failed(op, exc)
                        continue
                    done.append((i, op, outcome))
                await group.flush()  # the shared counters of the ops that stand, just before the commit
        except Exception as exc:  # no connection, or the commit failed: none of the batch is stored
            failed = self._failed(None, exc)
            for _, op, _ in done:
                state = self.table.peek(op.entity)
                if state is not None:
                    self.kind.stale(state)
            done = []
            results = [failed if r is None else r for r in results]
            retry_ids = {id(item) for item in retry}
            for i, item in enumerate(batch):
                if id(item) in retry_ids:
                    results[i] = failed
            retry = []
        self.group_commits += 1
        self.group_ops += len(done)
        if done:
            await self.finish([outcome for _, _, outcome in done])
        for i, _, outcome in done:
            results[i] = ("ok", outcome.result)
        again = {id(item) for item in retry}
        for i, item in enumerate(batch):
            if id(item) in again:
                continue
            result = results[i]
            if not item.future.done():
                item.future.set_result(result if result is not None else ("err", Internal().to_wire()))
        return retry

    def _failed(self, op: Op[Any] | None, exc: Exception) -> Result:
        if isinstance(exc, DomainError):
            return ("err", exc.to_wire())
        if db.is_lock_conflict(exc):  # lost again and again to other shards' batches: the client retries
            return ("err", Unavailable("Too many concurrent writes to the same rows; try again.").to_wire())
        shed = unavailable_or_none(exc, "shard ops are answered 503", log)
        if shed is not None:  # PostgreSQL or Redis down: 503 with Retry-After, one warning per outage
            return ("err", shed.to_wire())
        fields = {"op": type(op).__name__ if op is not None else "group commit", "kind": self.kind.name}
        log.exception("shard op failed", extra={"fields": {**fields, "shard": self.index}})
        return ("err", Internal().to_wire())

    async def _one(self, table: OpTable, op: Op[Any]) -> Result:
        """An op outside group commit (sockets, presence, typing): at once, under its entity's lock."""
        self.calls += 1
        fn = table.get(type(op))
        if fn is None:
            return ("err", Internal(f"{type(op).__name__} is not an op of {self.kind.name} shards").to_wire())
        try:
            value = await self.table.run(op.entity, lambda state: self._run(fn, state, op))
        except Exception as exc:
            return self._failed(op, exc)
        if self.kind.sockets_of is not None and isinstance(op, GatewayOp):
            self._track(self.kind.sockets_of, op.gateway, op.entity)
        return ("ok", value)

    async def _run(self, fn: Handler, state: S, op: Op[Any]) -> Any:
        """The op, then its after-commit path, under the entity's lock; the caller gets the result only."""
        done = await fn(state, op)
        await self.finish([done])
        return done.result

    # ------------------------------------------------------------ gateway registration

    def _track(self, sockets_of: Callable[[S, str], int], gateway: str, entity_id: int) -> None:
        state = self.table.peek(entity_id)
        if state is not None and sockets_of(state, gateway):
            self.gateway_entities[gateway].add(entity_id)
        else:
            self.gateway_entities[gateway].discard(entity_id)

    async def heartbeat(self, gateway: str, sockets: int) -> dict[str, Any]:
        """A gateway says it is alive and how many sockets it holds here; a mismatch asks it to re-register."""
        await self.ready()
        self.gateway_seen[gateway] = time.monotonic()
        known = 0
        if self.kind.sockets_of is not None:
            for eid in self.gateway_entities.get(gateway, ()):
                state = self.table.peek(eid)
                if state is not None:
                    known += self.kind.sockets_of(state, gateway)
        return {"epoch": self.epoch, "known": known}

    async def register(
        self, gateway: str, sockets: dict[int, list[str]], seq: int, departed: dict[int, float] | None = None
    ) -> dict[str, Any]:
        """Re-registration: these are the sockets ``gateway`` holds in this shard, as of its sequence number
        ``seq`` (operations numbered after it that arrived first are kept; older ones arriving later are
        ignored). ``departed``: entities whose sockets there closed (Unix time) while their disconnect may not
        have reached this shard, so that they go offline with a ``last_seen``."""
        table = await self.ready()
        self.gateway_seen[gateway] = time.monotonic()
        departed = departed or {}
        entities = set(sockets) | set(self.gateway_entities.get(gateway, ())) | set(departed)
        ops = [
            SyncGateway(
                user_id=eid, gateway=gateway, sockets=sockets.get(eid, []), seq=seq, closed_at=departed.get(eid)
            )
            for eid in entities
        ]
        await asyncio.gather(*(self._one(table, op) for op in ops))
        return {"epoch": self.epoch, "users": len(entities)}

    async def _expire_gateway(self, gateway: str) -> None:
        table = await self.ready()
        entities = list(self.gateway_entities.pop(gateway, ()))
        self.gateway_seen.pop(gateway, None)
        if self.kind.tracks_gateways:
            await asyncio.gather(*(self._one(table, ExpireGateway(user_id=eid, gateway=gateway)) for eid in entities))
        log.warning("gateway expired", extra={"fields": {"gateway": gateway, "entities": len(entities)}})
