"""One shard host for every shard kind (users now, chats next): what a shard process does for its entities.

A shard kind is its plain state class plus its op table (``ShardKind``); the host gives it:
* an entity table with lazy activation, idle eviction and one asyncio lock per entity (actors/runtime/entities.py);
* batched calls: ``call_batch`` runs a batch of ``(op, entity id, args, kwargs)`` concurrently across entities,
  each under its entity's lock, dispatched through the kind's explicit op table (no ``getattr``); errors come
  back as tuples, so one failing op never fails its batch;
* an epoch (new on every start: a restarted shard is told apart by the gateways);
* gateway registration, for kinds whose entities hold sockets (``tracks_gateways``): heartbeats, versioned
  re-registration through the kind's ``sync_gateway`` op, and expiry of a gateway that went silent through
  its ``expire_gateway`` op;
* the process's services (PostgreSQL, Redis) made once, and the background loops the kind asks for.

Plain Python (no Ray import): tests run a host in-process; actors/runtime/shards.py is the Ray shell around it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from actors.runtime import shard_counters
from actors.runtime.entities import EntityTable
from actors.runtime.services import Services
from domain.errors import DomainError, Internal
from storage.config import Settings

log = logging.getLogger("i9lyfe.shard")

S = TypeVar("S")

Op = tuple[str, int, tuple[Any, ...], dict[str, Any]]
Result = tuple[str, Any]
OpFn = Callable[..., Awaitable[Any]]  # (state, *args, **kwargs) -> result
OpTable = Mapping[str, OpFn]

GATEWAY_TIMEOUT_S = 15.0
MAINTENANCE_S = 5.0
# The ops a gateway-tracking kind must have; each takes (state, gateway, ...) and changes that gateway's sockets.
GATEWAY_OPS = ("connect", "disconnect", "sync_gateway", "expire_gateway")


@dataclass(frozen=True)
class ShardKind(Generic[S]):
    """What makes one kind of shard: its name, its entity state and its operations."""

    name: str  # "user", "chat": the shard actor names are <name>-shard-<fingerprint>-<k>
    state: Callable[[int], S]  # a fresh (not yet activated) state for an entity id
    keep: Callable[[S], bool]  # an entity for which this is true is never evicted (e.g. it holds sockets)
    ops: Callable[[Any], OpTable]  # the op table of a ready host (given the host), built once per shard process
    sockets_of: Callable[[S, str], int] | None = None  # sockets an entity holds on a gateway (gateway tracking)
    count: Callable[[Settings], int] = field(default=lambda s: s.user_shards)  # K, from the settings

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
                    ops = self.kind.ops(self)
                    if self.kind.tracks_gateways:
                        missing = [name for name in GATEWAY_OPS if name not in ops]
                        if missing:
                            raise TypeError(f"{self.kind.name} shards track gateways but lack ops {missing}")
                    loop = asyncio.get_running_loop()
                    self._tasks = [loop.create_task(self._loop("maintenance", MAINTENANCE_S, self._maintain))]
                    self._tasks += [loop.create_task(self._loop(n, s, job)) for n, s, job in self._jobs]
                    self._tasks += [loop.create_task(run(), name=n) for n, run in self._daemons]
                    self._ops = ops
        return self._ops

    async def on_ready(self, services: Services) -> None:
        """For subclasses: set up what needs the services, before the first op runs."""

    @property
    def services(self) -> Services:
        assert self._services is not None
        return self._services

    async def _loop(self, name: str, seconds: float, job: Callable[[], Awaitable[Any]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:
                log.exception("shard job failed", extra={"fields": {"job": name, "kind": self.kind.name}})

    async def _maintain(self) -> None:
        now = time.monotonic()
        for gateway, seen in list(self.gateway_seen.items()):
            if now - seen > GATEWAY_TIMEOUT_S:
                await self._expire_gateway(gateway)
        self.table.evict_idle()

    async def close(self) -> None:
        for task in self._tasks:
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
            "counters": shard_counters.snapshot(),  # for GET /metrics (actors/runtime/shard_counters.py)
        }

    async def call_batch(self, ops: list[Op]) -> list[Result]:
        table = await self.ready()
        self.batches += 1
        return list(await asyncio.gather(*(self._one(table, op) for op in ops)))

    async def _one(self, table: OpTable, op: Op) -> Result:
        name, entity_id, args, kwargs = op
        self.calls += 1
        fn = table.get(name)
        if fn is None:
            return ("err", Internal(f"unknown {self.kind.name} shard op {name!r}").to_wire())
        try:
            value = await self.table.run(entity_id, lambda state: fn(state, *args, **kwargs))
        except DomainError as exc:
            return ("err", exc.to_wire())
        except Exception:
            log.exception(
                "shard op failed", extra={"fields": {"op": name, "kind": self.kind.name, "shard": self.index}}
            )
            return ("err", Internal().to_wire())
        if self.kind.sockets_of is not None and name in GATEWAY_OPS and args:
            self._track(self.kind.sockets_of, args[0], entity_id)
        return ("ok", value)

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
        ops: list[Op] = [
            ("sync_gateway", eid, (gateway, sockets.get(eid, []), seq, departed.get(eid)), {}) for eid in entities
        ]
        await asyncio.gather(*(self._one(table, op) for op in ops))
        return {"epoch": self.epoch, "users": len(entities)}

    async def _expire_gateway(self, gateway: str) -> None:
        table = await self.ready()
        entities = list(self.gateway_entities.pop(gateway, ()))
        self.gateway_seen.pop(gateway, None)
        if self.kind.tracks_gateways:
            await asyncio.gather(*(self._one(table, ("expire_gateway", eid, (gateway,), {})) for eid in entities))
        log.warning("gateway expired", extra={"fields": {"gateway": gateway, "entities": len(entities)}})
