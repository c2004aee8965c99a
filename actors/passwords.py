"""argon2id password hashing, off the event loop in a small, capped thread pool."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# OWASP's argon2id profile: 19 MiB, t=2, p=1 (about 40 ms here).
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16)


class PasswordService:
    def __init__(self, concurrency: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="argon2")
        self._dummy: str | None = None

    async def _run(self, fn: object, *args: str) -> object:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)  # type: ignore[arg-type]

    async def hash(self, password: str) -> str:
        return str(await self._run(_HASHER.hash, password))

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Constant work whether or not the user exists: a missing hash verifies against a dummy."""
        if stored_hash is None:
            if self._dummy is None:
                self._dummy = await self.hash("not-a-real-password-0")
            await self._run(_safe_verify, self._dummy, password)
            return False
        return bool(await self._run(_safe_verify, stored_hash, password))

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
