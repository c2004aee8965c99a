"""Redis-backed sliding-window rate limiter, shared by every process (one round trip per check).

Sliding-window counter: the count of the current fixed window plus the previous window's count weighted by
how much of it still overlaps the sliding window. One Lua script reads and increments atomically.

Three ways to count: ``hit`` (count this request, refuse it past the limit: requests per IP or per user),
``check`` + ``record`` (refuse while past the limit, count only failures: failed logins per account, wrong
codes per email, so the right password is refused too once an account is under attack).

``hit_session``: a write's two checks in one round trip: the caller's session is not revoked (the denylist key,
api/deps.py) and the user's write bucket has room; a revoked session counts nothing.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from domain.errors import RateLimited
from storage.redis import Keys

_SCRIPT = """
local cur = KEYS[1]
local prev = KEYS[2]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local elapsed = tonumber(ARGV[3])
local mode = ARGV[4]
if KEYS[3] ~= nil and redis.call('EXISTS', KEYS[3]) == 1 then
  return {-1, 0}
end
if mode == 'record' then
  redis.call('INCR', cur)
  redis.call('EXPIRE', cur, window * 2)
  return {1, 0}
end
local c = tonumber(redis.call('GET', cur) or '0')
local p = tonumber(redis.call('GET', prev) or '0')
local weighted = p * (window - elapsed) / window + c
if weighted + 1 > limit then
  local wait
  if c + 1 > limit then
    wait = window - elapsed
  else
    -- time until enough of the previous window slides out
    local need = weighted + 1 - limit
    wait = math.min(window - elapsed, need * window / math.max(p, 1))
  end
  return {0, math.ceil(wait)}
end
if mode == 'check' then
  return {1, 0}
end
redis.call('INCR', cur)
redis.call('EXPIRE', cur, window * 2)
return {1, 0}
"""


class RateLimiter:
    def __init__(self, client: aioredis.Redis, keys: Keys, limits: dict[str, tuple[int, int]]) -> None:
        self.client = client
        self.keys = keys
        self.limits = limits
        self._script = client.register_script(_SCRIPT)

    async def hit(self, bucket: str, subject: str) -> None:
        """Count one request of ``subject`` in ``bucket``; raise RateLimited (429) when over the limit."""
        await self._run(bucket, subject, "hit")

    async def check(self, bucket: str, subject: str) -> None:
        """Raise RateLimited (429) if one more ``record`` would pass the limit; counts nothing."""
        await self._run(bucket, subject, "check")

    async def record(self, bucket: str, subject: str) -> None:
        """Count one event (say a failed login) of ``subject`` in ``bucket``; never refuses."""
        await self._run(bucket, subject, "record")

    async def hit_session(self, bucket: str, subject: str, revoked_key: str) -> bool:
        """``hit`` unless ``revoked_key`` exists (the session was revoked: answers True, counts nothing)."""
        if bucket not in self.limits:
            return bool(await self.client.exists(revoked_key))
        return await self._run(bucket, subject, "hit", revoked_key)

    async def _run(self, bucket: str, subject: str, mode: str, revoked_key: str | None = None) -> bool:
        rule = self.limits.get(bucket)
        if rule is None:
            return False
        limit, window = rule
        now = time.time()
        index = int(now // window)
        elapsed = now - index * window
        base = self.keys.rate(bucket, subject)
        keys = [f"{base}:{index}", f"{base}:{index - 1}"]
        if revoked_key is not None:
            keys.append(revoked_key)
        allowed, wait = await self._script(keys=keys, args=[limit, window, elapsed, mode])
        if int(allowed) < 0:
            return True
        if not int(allowed):
            raise RateLimited(int(wait) or 1)
        return False
