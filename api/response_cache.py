"""Whole encoded responses of hot reads, cached in Redis and checked against the versions they depend on.

An entry holds the response body (one format: the key names it) and the versions (storage/live_cache.py) its
reader saw *before* reading PostgreSQL; it is served only while every one of those versions is unchanged, so a
write that bumps one after its commit makes every older entry unservable at once (the same argument as the live
parts'). A lookup is one round trip: the entry, the current versions and, for a token, the session's deny mark.
Entries expire after ``TTL_S``: a lost bump leaves one stale for at most that long.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgpack
from starlette.requests import Request

from api.codec import JSON, MSGPACK, wants_msgpack
from api.responses import Encoded
from domain.errors import Unauthenticated

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

    async def serve(
        self,
        request: Request,
        key: str,
        version_keys: list[str],
        denied_key: str | None,
        render: Callable[[], Awaitable[Encoded]],
    ) -> Encoded:
        """The response under ``key`` (plus the negotiated format) while its versions are current, else
        ``render()``'s, cached for the next reader. A 401 when ``denied_key`` (the reader's session) is marked."""
        fmt = "m" if wants_msgpack(request.headers.get("accept")) else "j"
        key = f"{key}:{fmt}"
        found = await self.lookup(key, version_keys, denied_key)
        if found.denied:
            raise Unauthenticated("This session has ended; log in again.", reason="session_revoked")
        if found.body is not None:
            return Encoded(found.body, 200, MSGPACK if fmt == "m" else JSON)
        page = await render()
        await self.store(key, found.versions, bytes(page.body))
        return page


# KEYS: 1 the cached page, 2 the timeline's version, 3 the reader's follows version, 4 the merged accounts'
# version, 5 the user summaries' version, 6 (with a token) the session's deny mark. The page holds the versions
# it was read at (2-5) and the version keys and values of its posts. Returns {1} for a denied session, {2, body}
# for a current page, else {0, v2, v3, v4, v5}: a miss, with the versions read now (to tag a new page with).
_FEED_LOOKUP = """
if KEYS[6] and redis.call('EXISTS', KEYS[6]) == 1 then return {1} end
local now = {}
for i = 2, 5 do now[i - 1] = redis.call('GET', KEYS[i]) or '' end
local raw = redis.call('GET', KEYS[1])
if raw then
  local page = cmsgpack.unpack(raw)
  local current = true
  for i = 1, 4 do
    if page[1][i] ~= now[i] then current = false end
  end
  if current and #page[2] > 0 then
    local values = redis.call('MGET', unpack(page[2]))
    for i = 1, #values do
      if (values[i] or '') ~= page[3][i] then current = false break end
    end
  end
  if current then return {2, page[4]} end
end
return {0, now[1], now[2], now[3], now[4]}
"""


@dataclass(frozen=True)
class FeedLookup:
    body: bytes | None
    versions: list[bytes]  # of the timeline, follows, merged accounts, summaries, read before the page
    denied: bool


class FeedPages:
    """Home feed pages, cached whole and checked in one round trip (a script): the reader's timeline version
    (every change to the timeline sets a new one, storage/timelines.py), whom they follow and their knobs, the big
    accounts' new posts, the user summaries, and the version of every post on the page. On Redis Cluster the
    script's keys span slots: docs/OPERATIONS.md."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._lookup = redis.register_script(_FEED_LOOKUP)
        self.hits = 0
        self.misses = 0

    async def lookup(self, key: str, version_keys: list[str], denied_key: str | None) -> FeedLookup:
        found = await self._lookup(keys=[key, *version_keys, *([denied_key] if denied_key else [])])
        if int(found[0]) == 1:
            return FeedLookup(None, [], True)
        if int(found[0]) == 2:
            self.hits += 1
            return FeedLookup(bytes(found[1]), [], False)
        self.misses += 1
        return FeedLookup(None, [bytes(v) for v in found[1:]], False)

    async def store(
        self, key: str, versions: list[bytes], post_keys: list[str], post_versions: list[bytes], body: bytes
    ) -> None:
        # Bytes as msgpack's raw strings (no bin type): Redis's Lua cmsgpack reads only those.
        page = msgpack.packb([versions, post_keys, post_versions, body], use_bin_type=False)
        await self.redis.set(key, page, ex=TTL_S)
