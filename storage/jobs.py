"""Job queues on Redis Streams with consumer groups (DESIGN.md 1, workers): ``jobs:<queue>``.

A job is an entry ``{"t": type, "d": msgpack data}``. Workers read with XREADGROUP as a named consumer (a
stable name, so a restarted worker finds its own unfinished jobs in its pending list), acknowledge and delete a
job when it is done, and claim jobs another consumer left idle for ``CLAIM_IDLE_MS`` (XAUTOCLAIM). Delivery is
at-least-once: a job's effects must be idempotent. A long job keeps its claim fresh (``keep``) so that nobody
claims it while it runs. The queue is capped (MAXLEN ~) far above any backlog a healthy worker leaves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from storage.redis import Keys

QUEUE_MAXLEN = 1_000_000
CLAIM_IDLE_MS = 30_000
GROUP = "workers"


@dataclass(frozen=True)
class Job:
    id: str
    type: str
    data: bytes


class JobQueue:
    def __init__(self, client: aioredis.Redis, keys: Keys, name: str) -> None:
        self.client = client
        self.key = keys("jobs", name)
        self.name = name
        self._group_ready = False

    async def ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self.client.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def push(self, jobs: list[tuple[str, bytes]]) -> list[str]:
        """Enqueue ``(type, data)`` jobs in one round trip; their ids."""
        if not jobs:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for type_, data in jobs:
                pipe.xadd(self.key, {"t": type_, "d": data}, maxlen=QUEUE_MAXLEN, approximate=True)
            ids = await pipe.execute()
        return [_text(i) for i in ids]

    async def read(self, consumer: str, count: int, block_ms: int, *, pending: bool = False) -> list[Job]:
        """New jobs for ``consumer`` (blocking up to ``block_ms``), or with ``pending`` its own unacknowledged
        ones (a restarted worker resumes them)."""
        await self.ensure_group()
        try:
            raw: Any = await self.client.xreadgroup(
                GROUP, consumer, {self.key: "0" if pending else ">"}, count=count, block=None if pending else block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._group_ready = False  # the queue was deleted (Redis flushed): make it again next time
            return []
        return [job for _stream, entries in raw or () for job in _jobs(entries)]

    async def claim_idle(self, consumer: str, count: int, min_idle_ms: int = CLAIM_IDLE_MS) -> list[Job]:
        """Jobs other consumers left idle (their worker died or hangs), now ``consumer``'s."""
        await self.ensure_group()
        raw: Any = await self.client.xautoclaim(self.key, GROUP, consumer, min_idle_ms, start_id="0-0", count=count)
        return list(_jobs(raw[1]))

    async def keep(self, consumer: str, job_id: str) -> None:
        """Reset the job's idle time: it is still being worked on."""
        await self.client.xclaim(self.key, GROUP, consumer, 0, [job_id], justid=True)

    async def done(self, job_id: str) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.xack(self.key, GROUP, job_id)
            pipe.xdel(self.key, job_id)
            await pipe.execute()

    async def backlog(self) -> int:
        """Jobs waiting or in progress."""
        return int(await self.client.xlen(self.key))


def _jobs(entries: Any) -> list[Job]:
    out = []
    for entry_id, fields in entries or ():
        if not fields:  # deleted while pending: handed out with no type, for the worker to acknowledge
            out.append(Job(_text(entry_id), "", b""))
            continue
        out.append(Job(_text(entry_id), _text(fields[b"t"]), bytes(fields[b"d"])))
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
