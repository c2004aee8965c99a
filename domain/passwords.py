"""argon2id password hashing, off the event loop in a small, capped thread pool with a bounded queue.

At most ``concurrency`` hashes run at once (one thread each). A hash that finds every thread busy waits for
one, but not for longer than ``start_deadline_s``, and not at all when ``max_waiting`` hashes already wait:
then it is refused with ``Unavailable`` (503 with Retry-After). A burst of logins is answered, some of it
with 503, instead of queueing without end behind ~40 ms of CPU per hash.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from domain.errors import Unavailable

T = TypeVar("T")

# OWASP's argon2id profile: 19 MiB, t=2, p=1 (about 40 ms here).
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16)

START_DEADLINE_S = 2.5
MAX_WAITING = 256
RETRY_AFTER_S = 2


class PasswordService:
    def __init__(
        self, concurrency: int = 2, *, max_waiting: int = MAX_WAITING, start_deadline_s: float = START_DEADLINE_S
    ) -> None:
        workers = max(1, concurrency)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._slots = asyncio.Semaphore(workers)  # one per thread: a hash that holds one starts at once
        self.waiting = 0  # hashes waiting for a thread
        self.running = 0  # hashes holding a thread (until the thread is done, even if their caller gave up)
        self.max_waiting = max_waiting
        self.start_deadline_s = start_deadline_s
        self.refused = 0
        self._dummy: str | None = None

    async def _run(self, fn: Callable[..., T], *args: str) -> T:
        if self.waiting >= self.max_waiting:
            raise self._overloaded()
        self.waiting += 1
        try:
            async with asyncio.timeout(self.start_deadline_s):
                await self._slots.acquire()
        except TimeoutError:
            raise self._overloaded() from None
        finally:
            self.waiting -= 1
        self.running += 1
        loop = asyncio.get_running_loop()
        try:
            job: Future[T] = self._pool.submit(fn, *args)
        except BaseException:
            self._release()
            raise

        def release(_: Future[T]) -> None:  # when the thread is done (or the job cancelled), even if we were
            with contextlib.suppress(RuntimeError):  # cancelled meanwhile; RuntimeError: the loop has closed
                loop.call_soon_threadsafe(self._release)

        job.add_done_callback(release)
        return await asyncio.wrap_future(job)

    def _release(self) -> None:
        self.running -= 1
        self._slots.release()

    def _overloaded(self) -> Unavailable:
        self.refused += 1
        return Unavailable("Too many password checks at once; try again shortly.", retry_after=RETRY_AFTER_S)

    async def hash(self, password: str) -> str:
        return str(await self._run(_HASHER.hash, password))

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Constant work whether or not the user exists: a missing hash verifies against a dummy."""
        if stored_hash is None:
            if self._dummy is None:
                self._dummy = await self.hash("not-a-real-password-0")
            await self._run(_safe_verify, self._dummy, password)
            return False
        return await self._run(_safe_verify, stored_hash, password)

    @staticmethod
    def needs_rehash(stored_hash: str) -> bool:
        return _HASHER.check_needs_rehash(stored_hash)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _safe_verify(stored_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
