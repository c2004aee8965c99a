"""Whole encoded responses of hot reads, cached in Redis and checked against the versions they depend on.

An entry holds the response body (one format: the key names it) and the versions (actors/live_cache.py) its
reader saw *before* reading PostgreSQL; it is served only while every one of those versions is unchanged, so a
write that bumps one after its commit makes every older entry unservable at once (the same argument as the live
parts'). A lookup is one round trip: the entry, the current versions and, for a token, the session's deny mark.
Entries expire after ``TTL_S``: a lost bump leaves one stale for at most that long.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

TTL_S = 60


@dataclass(frozen=True)
class Lookup:
    body: bytes | None  # the cached response, when current
    versions: list[bytes]  # the versions read (what a new entry is tagged with)
    denied: bool  # the reader's session has ended


class ResponseCache:
    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.hits = 0
        self.misses = 0

    async def lookup(self, key: str, version_keys: list[str], denied_key: str | None) -> Lookup:
        names = [key, *version_keys, *([denied_key] if denied_key else [])]
        values = await self.redis.mget(names)
        denied = denied_key is not None and values.pop() is not None
        raw, versions = values[0], [v or b"" for v in values[1:]]
        body = None
        if raw is not None:
            tags, cached = msgpack.unpackb(raw, raw=False)
            if list(tags) == versions:
                body = bytes(cached)
        if body is None:
            self.misses += 1
        else:
            self.hits += 1
        return Lookup(body, versions, denied)

    async def store(self, key: str, versions: list[bytes], body: bytes) -> None:
        await self.redis.set(key, msgpack.packb([versions, body], use_bin_type=True), ex=TTL_S)
