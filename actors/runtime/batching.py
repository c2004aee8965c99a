"""Per-key micro-batching: items submitted for the same key ride in one ``send`` call.

A batch goes out when it holds ``max_batch`` items, when ``max_delay`` has passed since its first item, or, with
``adaptive``, on the next loop turn when nothing for that key is in flight (so a lone request pays no delay,
while a busy key gathers everything that arrives during the previous call). Used for every hop that would
otherwise cost one Ray call or one database round trip per item (DESIGN.md section 9).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 (item)
R = TypeVar("R")

Send = Callable[[int, list[I]], Awaitable[list[R]]]


class _Pending(Generic[I, R]):
    __slots__ = ("futures", "items", "timer")

    def __init__(self) -> None:
        self.items: list[I] = []
        self.futures: list[asyncio.Future[R]] = []
        self.timer: asyncio.TimerHandle | None = None


class Coalescer(Generic[I, R]):
    def __init__(
        self, send: Send[I, R], *, max_batch: int = 128, max_delay: float = 0.002, adaptive: bool = True
    ) -> None:
        self._send = send
        self.max_batch = max(1, max_batch)
        self.max_delay = max_delay
        self.adaptive = adaptive
        self._pending: dict[int, _Pending[I, R]] = {}
        self._in_flight: dict[int, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches_sent = 0
        self.items_sent = 0

    async def submit(self, key: int, item: I) -> R:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending()
        pending.items.append(item)
        pending.futures.append(fut)
        if len(pending.items) >= self.max_batch:
            self._flush(key)
        elif pending.timer is None:
            idle = self.adaptive and not self._in_flight.get(key)
            pending.timer = loop.call_later(0.0 if idle else self.max_delay, self._flush, key)
        return await fut

    def _flush(self, key: int) -> None:
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        task = asyncio.get_running_loop().create_task(self._run(key, pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: int, pending: _Pending[I, R]) -> None:
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        self.batches_sent += 1
        self.items_sent += len(pending.items)
        try:
            results = await self._send(key, pending.items)
        except Exception as exc:
            for fut in pending.futures:
                if not fut.done():
                    fut.set_exception(exc)
            return
        finally:
            self._in_flight[key] -= 1
        for fut, result in zip(pending.futures, results, strict=True):
            if not fut.done():
                fut.set_result(result)
