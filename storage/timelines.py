"""Home timelines in Redis: ``tl:{<user>}``, a sorted set of feed entries (DESIGN.md 3).

Every member has score 0, so the set is ordered by the member string: ``<entry id, 20 digits>:<post>:<author>:
<reposter or 0>``. Entry ids are time-ordered (storage/ids.py: a post's id, or a repost's), so lexicographic
order is time order and a keyset cursor is an entry id. Two markers sit at the ends:

* ``~`` (above every digit) means "this timeline exists": it is written before a rebuild reads PostgreSQL, so
  that a fan-out running during the rebuild still lands here, and is never trimmed;
* ``0`` (below every entry) means "nothing older belongs here": a rebuild that found fewer entries than it
  asked for writes it. Trimming to the cap removes it first, so a trimmed timeline falls back to PostgreSQL
  past its oldest entry (api/reads/feed.py).

A timeline expires after ``TIMELINE_TTL_S`` without a read or a socket connect; only timelines that exist
(active users) are fanned out to, so an inactive user costs nothing per post and is rebuilt on the next read.

Every change to a timeline (an entry added or removed, a rebuild, an author forgotten) also sets its version
``tlv:{<user>}`` to a new random token, in the same script or pipeline: cached feed pages are checked against it
(api/response_cache.py ``FeedPages``).

Keys of one user share the hash tag ``{<user>}`` (``events:{<user>}`` and ``tlv:{<user>}`` too), so the per-user
steps of the fan-out script touch one Redis Cluster slot each; docs/OPERATIONS.md says which keys must live
together.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis.asyncio as aioredis

from storage.redis import Keys

TIMELINE_CAP = 800
TIMELINE_TTL_S = 14 * 24 * 3600  # "active in the last 14 days" (FEED_ACTIVE_DAYS)
LIVE = b"~"
COMPLETE = b"0"


class Entry(NamedTuple):  # a tuple: a window parses dozens per read
    entry_id: int
    post_id: int
    author_id: int
    via: int  # the reposter, 0 for the author's own post

    @property
    def member(self) -> str:
        return f"{self.entry_id:020d}:{self.post_id}:{self.author_id}:{self.via}"

    @staticmethod
    def of_row(row: Any) -> Entry:
        """An entry of a feed row (storage/feed.py: entry_id, post_id, author_id, via)."""
        return Entry(int(row["entry_id"]), int(row["post_id"]), int(row["author_id"]), int(row["via"]))

    @staticmethod
    def parse(member: bytes) -> Entry | None:
        parts = member.split(b":")
        if len(parts) != 4:
            return None  # a marker
        return Entry(int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3]))


# KEYS: triples (tl:{u}, events:{u}, tlv:{u}). ARGV: member, cap, stream maxlen, stream ttl, event type, event
# data, version token, timeline ttl, then one flag per triple ("1": store and return an event for that user, "0":
# timeline only). A user whose timeline does not exist is skipped (inactive). The entry is the de-duplication:
# ZADD NX adds it once, and only a user to whom it was added gets the event (and a new timeline version), so a
# batch run twice changes nothing the second time. Returns, flat, (triple index, event id, previous event id)
# for each event stored.
_FANOUT = """
local member, cap = ARGV[1], tonumber(ARGV[2])
local out = {}
local triples = #KEYS / 3
for i = 1, triples do
  local tl, ev = KEYS[3 * i - 2], KEYS[3 * i - 1]
  if redis.call('EXISTS', tl) == 1 and redis.call('ZADD', tl, 'NX', 0, member) == 1 then
    redis.call('SET', KEYS[3 * i], ARGV[7], 'EX', ARGV[8])
    local n = redis.call('ZCARD', tl)
    if n > cap + 2 then
      redis.call('ZREMRANGEBYRANK', tl, 0, n - cap - 3)
    end
    if ARGV[8 + i] == '1' then
      local last = redis.call('XREVRANGE', ev, '+', '-', 'COUNT', 1)
      local prev = '0-0'
      if #last > 0 then prev = last[1][1] end
      local id = redis.call('XADD', ev, 'MAXLEN', '~', ARGV[3], '*', 't', ARGV[5], 'd', ARGV[6])
      redis.call('EXPIRE', ev, ARGV[4])
      out[#out + 1] = i
      out[#out + 1] = id
      out[#out + 1] = prev
    end
  end
end
return out
"""

# KEYS: tl, tlv. ARGV: cap, ttl, complete flag, version token, members... Adds entries to an existing timeline (a
# rebuild's second step, or a new followee's recent posts); with the flag "1" it also marks the timeline
# complete, with "-1" it removes that mark (older entries may be missing now). Returns 0 when the timeline does
# not exist.
_MERGE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[2])
for i = 5, #ARGV, 500 do
  local args = {}
  for j = i, math.min(i + 499, #ARGV) do
    args[#args + 1] = 0
    args[#args + 1] = ARGV[j]
  end
  redis.call('ZADD', KEYS[1], unpack(args))
end
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], 0, '0')
elseif ARGV[3] == '-1' then
  redis.call('ZREM', KEYS[1], '0')
end
local n = redis.call('ZCARD', KEYS[1])
local cap = tonumber(ARGV[1])
if n > cap + 2 then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - cap - 3)
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: tl, tlv. ARGV: user id, version token, ttl. Removes the entries of one author (their posts, and their
# reposts).
_FORGET_AUTHOR = """
local gone = 0
local who = ':' .. ARGV[1]
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local _, _, author, via = string.find(m, '^%d+:%d+:(%d+):(%d+)$')
  if author and ((via == '0' and author == ARGV[1]) or via == ARGV[1]) then
    redis.call('ZREM', KEYS[1], m)
    gone = gone + 1
  end
end
if gone > 0 then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
return gone
"""


@dataclass(frozen=True)
class Window:
    exists: bool
    entries: list[Entry]
    complete: bool  # the window reached the "nothing older" mark
    full: bool  # it returned as many members as asked (more may follow)


class Timelines:
    def __init__(self, client: aioredis.Redis, keys: Keys, *, cap: int = TIMELINE_CAP, ttl_s: int = TIMELINE_TTL_S):
        self.client = client
        self.keys = keys
        self.cap = cap
        self.ttl_s = ttl_s
        self._fanout = client.register_script(_FANOUT)
        self._merge = client.register_script(_MERGE)
        self._forget = client.register_script(_FORGET_AUTHOR)

    def key(self, user_id: int) -> str:
        return self.keys.timeline(user_id)

    async def window(self, user_id: int, below: int | None, count: int) -> Window:
        """Up to ``count`` entries older than entry ``below`` (None: from the newest), newest first; the read
        keeps the timeline alive (its TTL restarts)."""
        top = b"(~" if below is None else f"({below:020d}".encode()
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zrevrangebylex(self.key(user_id), top, b"-", start=0, num=count)
            pipe.expire(self.key(user_id), self.ttl_s)
            members, alive = await pipe.execute()
        entries = [e for e in (Entry.parse(m) for m in members) if e is not None]
        return Window(bool(alive), entries, COMPLETE in members, len(members) >= count)

    def version_key(self, user_id: int) -> str:
        return self.keys.timeline_version(user_id)

    async def start(self, user_id: int) -> None:
        """Make the timeline exist (first step of a rebuild): fan-outs land here from now on."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(self.key(user_id), {LIVE: 0}, nx=True)
            pipe.expire(self.key(user_id), self.ttl_s)
            pipe.set(self.version_key(user_id), _token(), ex=self.ttl_s)
            await pipe.execute()

    async def merge(self, user_id: int, entries: list[Entry], *, complete: bool | None = None) -> bool:
        """Add entries to an existing timeline; ``complete`` True marks it complete, False unmarks it."""
        flag = "1" if complete else "-1" if complete is False else "0"
        args: list[Any] = [self.cap, self.ttl_s, flag, _token(), *(e.member for e in entries)]
        return bool(await self._merge(keys=[self.key(user_id), self.version_key(user_id)], args=args))

    async def exists(self, user_id: int) -> bool:
        return bool(await self.client.exists(self.key(user_id)))

    async def touch(self, user_id: int) -> bool:
        """Restart the TTL of an existing timeline; False when there is none."""
        return bool(await self.client.expire(self.key(user_id), self.ttl_s))

    async def remove(self, user_id: int, entries: list[Entry]) -> int:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zrem(self.key(user_id), *(e.member for e in entries))
            pipe.set(self.version_key(user_id), _token(), ex=self.ttl_s)
            removed, _ = await pipe.execute()
        return int(removed)

    async def forget_author(self, user_id: int, author_id: int) -> int:
        keys = [self.key(user_id), self.version_key(user_id)]
        return int(await self._forget(keys=keys, args=[author_id, _token(), self.ttl_s]))

    async def fan_out(
        self,
        entry: Entry,
        users: list[int],
        notify: list[bool],
        event_type: str,
        event_data: bytes,
        *,
        stream_maxlen: int,
        stream_ttl_s: int,
    ) -> list[tuple[int, str, str]]:
        """Add ``entry`` to each user's existing timeline once and, for users with ``notify``, store the event
        in their stream: one script call. Returns (user, event id, previous event id) per event stored."""
        if not users:
            return []
        keys: list[str] = []
        for user_id in users:
            keys += [self.key(user_id), self.keys.events(user_id), self.version_key(user_id)]
        args: list[Any] = [entry.member, self.cap, stream_maxlen, stream_ttl_s, event_type, event_data]
        args += [_token(), self.ttl_s, *("1" if n else "0" for n in notify)]
        flat = await self._fanout(keys=keys, args=args)
        out = []
        for i in range(0, len(flat), 3):
            index = int(flat[i]) - 1
            out.append((users[index], _text(flat[i + 1]), _text(flat[i + 2])))
        return out


def _token() -> bytes:
    """A new timeline version: random, so it never equals one a cached page was read at."""
    return secrets.token_bytes(8)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
