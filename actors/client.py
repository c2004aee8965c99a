"""The api side of the shards: coalesces calls per shard into micro-batches (one Ray call per batch).

A batch goes out when it holds ``max_batch`` ops, when ``max_delay`` has passed since its first op, or at
once when no call to that shard is in flight (so a lone request pays no batching delay).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from actors.errors import DomainError, Unavailable
from actors.registry import shard_index

log = logging.getLogger("i9lyfe.shardclient")


class _Pending:
    __slots__ = ("items", "timer")

    def __init__(self) -> None:
        self.items: list[tuple[tuple[str, int, tuple[Any, ...], dict[str, Any]], asyncio.Future[Any]]] = []
        self.timer: asyncio.TimerHandle | None = None


class ShardClient:
    def __init__(
        self, shards: list[Any], *, max_batch: int = 128, max_delay: float = 0.002, adaptive: bool = True
    ) -> None:
        if not shards:
            raise ValueError("no shards")
        self.shards = shards
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.adaptive = adaptive
        self._pending = [_Pending() for _ in shards]
        self._in_flight = [0] * len(shards)
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches_sent = 0
        self.ops_sent = 0

    def shard_for(self, entity_id: int) -> int:
        return shard_index(entity_id, len(self.shards))

    async def call(self, op: str, entity_id: int, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        k = self.shard_for(entity_id)
        pending = self._pending[k]
        pending.items.append(((op, entity_id, args, kwargs), fut))
        if len(pending.items) >= self.max_batch:
            self._flush(k)
        elif pending.timer is None:
            delay = 0.0 if (self.adaptive and self._in_flight[k] == 0) else self.max_delay
            pending.timer = loop.call_later(delay, self._flush, k)
        return await fut

    def _flush(self, k: int) -> None:
        pending = self._pending[k]
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None
        items, pending.items = pending.items, []
        if not items:
            return
        task = asyncio.get_running_loop().create_task(self._send(k, items))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(
        self, k: int, items: list[tuple[tuple[str, int, tuple[Any, ...], dict[str, Any]], asyncio.Future[Any]]]
    ) -> None:
        self._in_flight[k] += 1
        self.batches_sent += 1
        self.ops_sent += len(items)
        try:
            results = await self.shards[k].call_batch.remote([op for op, _ in items])
        except Exception as exc:
            log.warning("shard call failed", extra={"fields": {"shard": k, "error": repr(exc)}})
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(Unavailable("The realtime service is restarting; try again."))
            return
        finally:
            self._in_flight[k] -= 1
        for (_, fut), (status, value) in zip(items, results, strict=True):
            if fut.done():
                continue
            if status == "ok":
                fut.set_result(value)
            else:
                fut.set_exception(DomainError.from_wire(value))
