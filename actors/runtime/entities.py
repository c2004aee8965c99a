"""Logical actors inside a shard: lazily created entity states, one asyncio lock each, idle eviction.

Plain Python (no Ray import) so it is unit-tested without a cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

S = TypeVar("S")
R = TypeVar("R")


@dataclass
class _Slot(Generic[S]):
    state: S
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_used: float = field(default_factory=time.monotonic)
    busy: int = 0


class EntityTable(Generic[S]):
    """Entity id -> state. Work for one entity is serialized; different entities run concurrently."""

    def __init__(
        self, factory: Callable[[int], S], idle_seconds: float = 600.0, keep: Callable[[S], bool] | None = None
    ) -> None:
        self._factory = factory
        self._slots: dict[int, _Slot[S]] = {}
        self.idle_seconds = idle_seconds
        self._keep = keep or (lambda _state: False)

    def __len__(self) -> int:
        return len(self._slots)

    def ids(self) -> list[int]:
        return list(self._slots)

    def peek(self, entity_id: int) -> S | None:
        slot = self._slots.get(entity_id)
        return slot.state if slot is not None else None

    def _slot(self, entity_id: int) -> _Slot[S]:
        slot = self._slots.get(entity_id)
        if slot is None:
            slot = _Slot(self._factory(entity_id))
            self._slots[entity_id] = slot
        return slot

    async def run(self, entity_id: int, fn: Callable[[S], Awaitable[R]]) -> R:
        slot = self._slot(entity_id)
        slot.busy += 1
        try:
            async with slot.lock:
                slot.last_used = time.monotonic()
                return await fn(slot.state)
        finally:
            slot.busy -= 1
            slot.last_used = time.monotonic()

    def evict_idle(self, now: float | None = None) -> int:
        """Drop entities idle for ``idle_seconds`` that hold nothing worth keeping (e.g. open sockets)."""
        now = time.monotonic() if now is None else now
        stale = [
            eid
            for eid, slot in self._slots.items()
            if slot.busy == 0 and now - slot.last_used >= self.idle_seconds and not self._keep(slot.state)
        ]
        for eid in stale:
            del self._slots[eid]
        return len(stale)
