"""The api side of the shards: calls to a shard are coalesced into micro-batches (one Ray call per batch,
see actors/runtime/batching.py), so the Ray hop costs a fraction of a call per request under load."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from actors.runtime.batching import Coalescer
from actors.runtime.metrics import SHARD_BATCH_SIZE, SHARD_CALL_ERROR, SHARD_CALL_OK
from actors.runtime.registry import shard_index
from domain.errors import DomainError, Unavailable

log = logging.getLogger("i9lyfe.shardclient")

CALL_TIMEOUT_S = 10.0
RETRY_AFTER_S = 2  # what a 503 from a shard that did not answer tells the client (a restart takes seconds)

Op = tuple[str, int, tuple[Any, ...], dict[str, Any]]


class ShardClient:
    def __init__(
        self, shards: list[Any], *, max_batch: int = 128, max_delay: float = 0.002, adaptive: bool = True
    ) -> None:
        if not shards:
            raise ValueError("no shards")
        self.shards = shards
        self._batches: Coalescer[Op, tuple[str, Any]] = Coalescer(
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

    async def call(self, op: str, entity_id: int, *args: Any, deadline_s: float = CALL_TIMEOUT_S, **kwargs: Any) -> Any:
        """Run ``op`` in the entity's logical actor; its DomainError is raised here. A shard that does not
        answer within ``deadline_s`` seconds (restarting, overloaded) raises Unavailable."""
        try:
            async with asyncio.timeout(deadline_s):
                status, value = await self._batches.submit(self.shard_for(entity_id), (op, entity_id, args, kwargs))
        except TimeoutError as exc:
            log.warning("shard call timed out", extra={"fields": {"op": op, "timeout_s": deadline_s}})
            raise Unavailable(
                "The realtime service did not answer in time; try again.", retry_after=RETRY_AFTER_S
            ) from exc
        if status == "ok":
            return value
        raise DomainError.from_wire(value)

    async def _send(self, k: int, ops: list[Op]) -> list[tuple[str, Any]]:
        SHARD_BATCH_SIZE.observe(len(ops))
        started = time.perf_counter()
        try:
            results: list[tuple[str, Any]] = await self.shards[k].call_batch.remote(ops)
        except Exception as exc:
            SHARD_CALL_ERROR.observe(time.perf_counter() - started)
            log.warning("shard call failed", extra={"fields": {"shard": k, "error": repr(exc)}})
            raise Unavailable("The realtime service is restarting; try again.", retry_after=RETRY_AFTER_S) from exc
        SHARD_CALL_OK.observe(time.perf_counter() - started)
        return results
