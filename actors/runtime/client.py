"""The api side of the shards: a typed client (``await users.call(CreatePost(...))`` answers the op's result type,
domain/ops.py), whose calls to a shard are coalesced into micro-batches (one Ray call per batch, see
actors/runtime/batching.py), so the Ray hop costs a fraction of a call per request under load. The shard-level
calls (ping, heartbeat, register) go through it too: nothing outside actors/runtime touches a Ray handle."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, TypeVar, cast

from actors.runtime.batching import Coalescer
from actors.runtime.metrics import SHARD_BATCH_SIZE, SHARD_CALL_ERROR, SHARD_CALL_OK
from actors.runtime.registry import shard_index
from domain.errors import DomainError, Unavailable
from domain.ops import Op
from storage.outage import OUTAGES

log = logging.getLogger("i9lyfe.shardclient")

CALL_TIMEOUT_S = 10.0
RETRY_AFTER_S = 2  # what a 503 from a shard that did not answer tells the client (a restart takes seconds)

R = TypeVar("R")


class ShardClient:
    """The shards of one kind (``kind``: "user" or "chat", the ``KIND`` of its ops)."""

    def __init__(
        self,
        shards: list[Any],
        *,
        kind: str = "user",
        max_batch: int = 128,
        max_delay: float = 0.002,
        adaptive: bool = True,
    ) -> None:
        if not shards:
            raise ValueError("no shards")
        self.shards = shards
        self.kind = kind
        self._batches: Coalescer[Op[Any], tuple[str, Any]] = Coalescer(
            self._send, max_batch=max_batch, max_delay=max_delay, adaptive=adaptive
        )

    @property
    def batches_sent(self) -> int:
        return self._batches.batches_sent

    @property
    def ops_sent(self) -> int:
        return self._batches.items_sent

    def shard_for(self, entity_id: int) -> int:
        return shard_index(entity_id, len(self.shards))

    async def call(self, op: Op[R], *, deadline_s: float = CALL_TIMEOUT_S) -> R:
        """Run ``op`` in its entity's logical actor and answer its result; its DomainError is raised here. A shard
        that does not answer within ``deadline_s`` seconds (restarting, overloaded) raises Unavailable."""
        if self.kind != op.KIND:
            raise TypeError(f"{type(op).__name__} is not an op of {self.kind} shards")
        try:
            async with asyncio.timeout(deadline_s):
                status, value = await self._batches.submit(self.shard_for(op.entity), op)
        except TimeoutError as exc:
            OUTAGES.failed("ray", "shard calls time out", exc, log)  # one warning per outage per process
            raise Unavailable(
                "The realtime service did not answer in time; try again.", retry_after=RETRY_AFTER_S
            ) from exc
        if status == "ok":
            return cast(R, value)
        raise DomainError.from_wire(value)

    # ------------------------------------------------------------ shard-level calls (no entity)

    async def ping(self, k: int) -> dict[str, Any]:
        """Who and where shard ``k`` is (actors/runtime/host.py ``ping``)."""
        result: dict[str, Any] = await self.shards[k].ping.remote()
        return result

    async def heartbeat(self, k: int, gateway: str, sockets: int) -> dict[str, Any]:
        """A gateway is alive and holds ``sockets`` sockets in shard ``k``; the answer names the shard's epoch."""
        result: dict[str, Any] = await self.shards[k].heartbeat.remote(gateway, sockets)
        return result

    async def register(
        self, k: int, gateway: str, sockets: dict[int, list[str]], seq: int, departed: dict[int, float]
    ) -> dict[str, Any]:
        """Re-registration of every socket ``gateway`` holds in shard ``k`` (actors/runtime/host.py ``register``)."""
        result: dict[str, Any] = await self.shards[k].register.remote(gateway, sockets, seq, departed)
        return result

    async def _send(self, k: int, ops: list[Op[Any]]) -> list[tuple[str, Any]]:
        SHARD_BATCH_SIZE.observe(len(ops))
        started = time.perf_counter()
        try:
            results: list[tuple[str, Any]] = await self.shards[k].call_batch.remote(ops)
        except Exception as exc:
            SHARD_CALL_ERROR.observe(time.perf_counter() - started)
            OUTAGES.failed("ray", "shard calls fail", exc, log)
            raise Unavailable("The realtime service is restarting; try again.", retry_after=RETRY_AFTER_S) from exc
        SHARD_CALL_OK.observe(time.perf_counter() - started)
        return results
