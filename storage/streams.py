"""Per-user event streams in Redis: ``events:{<user>}`` holds the user's replayable events; the stream entry id
is the event id clients see.

Appending is idempotent per outbox event: a Lua script records the entry ids it made under
``evd:<outbox id>`` (24 h), so a relay that retries a half-delivered event gets the same ids back instead of
duplicates. Streams are capped (MAXLEN ~) and expire when untouched for 30 days; the retention promise is at
least 24 h and at least 1,000 events (documented in AsyncAPI).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from storage.redis import Keys

STREAM_MAXLEN = 10_000
STREAM_TTL_S = 30 * 24 * 3600
DEDUPE_TTL_S = 24 * 3600  # outlives any retry: > outbox.RETRY_WINDOW_S + outbox.LEASE_S (checked by a test)
RETENTION_MIN_EVENTS = 1_000
RETENTION_MIN_SECONDS = 24 * 3600
STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")

_APPEND = """
local done = redis.call('HGETALL', KEYS[1])
if #done > 0 then
  return done
end
local n = #KEYS - 1
for i = 1, n do
  local kind = redis.call('TYPE', KEYS[i + 1])['ok']
  if kind ~= 'stream' and kind ~= 'none' then
    -- checked before any XADD, so that a failing event writes nothing and its retry duplicates nothing
    return redis.error_reply('WRONGTYPE events key ' .. KEYS[i + 1] .. ' holds a ' .. kind)
  end
end
local out = {}
for i = 1, n do
  local key = KEYS[i + 1]
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  local prev = '0-0'
  if #last > 0 then
    prev = last[1][1]
  end
  local id = redis.call('XADD', key, 'MAXLEN', '~', ARGV[1], '*', 't', ARGV[4], 'd', ARGV[5])
  redis.call('EXPIRE', key, ARGV[2])
  out[#out + 1] = ARGV[5 + i]
  out[#out + 1] = id .. ' ' .. prev
end
redis.call('HSET', KEYS[1], unpack(out))
redis.call('EXPIRE', KEYS[1], ARGV[3])
return out
"""


@dataclass(frozen=True)
class Appended:
    """Where an event landed in one user's stream: its id and the id of the entry before it."""

    id: str
    prev: str


@dataclass(frozen=True)
class StoredEvent:
    id: str
    type: str
    data: bytes  # msgpack


def parse_stream_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq)


_MAX_ID_PART = (1 << 64) - 1


def is_stream_id(value: str) -> bool:
    """``<ms>-<seq>`` with both parts within Redis's 64-bit range (a larger one would make Redis fail)."""
    if not STREAM_ID.match(value):
        return False
    ms, seq = parse_stream_id(value)
    return ms <= _MAX_ID_PART and seq <= _MAX_ID_PART


class Streams:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._append = client.register_script(_APPEND)

    def stream_key(self, user_id: int) -> str:
        return self.keys.events(user_id)

    async def append(self, events: list[tuple[int, list[int], str, bytes]]) -> list[dict[int, Appended]]:
        """XADD each event ``(outbox id, recipients, type, data)`` to its recipients' streams, in order, in one
        round trip; idempotent per outbox id. Returns, per event, user id -> (event id, previous entry id): the
        previous id lets a gateway see that a live event overtook an earlier one and fill the gap."""
        live = [e for e in events if e[1]]
        if not live:
            return [{} for _ in events]
        async with self.client.pipeline(transaction=False) as pipe:
            for outbox_id, recipients, type_, data in live:
                keys = [self.keys("evd", outbox_id), *(self.stream_key(u) for u in recipients)]
                args: list[Any] = [STREAM_MAXLEN, STREAM_TTL_S, DEDUPE_TTL_S, type_, data, *recipients]
                await self._append(keys=keys, args=args, client=pipe)
            results = await pipe.execute()
        by_id: dict[int, dict[int, Appended]] = {}
        for (outbox_id, *_), flat in zip(live, results, strict=True):
            pairs = [x.decode() if isinstance(x, bytes) else str(x) for x in flat]
            by_id[outbox_id] = {int(pairs[i]): Appended(*pairs[i + 1].split(" ", 1)) for i in range(0, len(pairs), 2)}
        return [by_id.get(e[0], {}) for e in events]

    async def read_after(self, user_id: int, after_id: str, count: int = 500) -> list[StoredEvent]:
        """Events strictly after ``after_id``, oldest first, at most ``count``."""
        rows: Any = await self.client.xrange(self.stream_key(user_id), min=f"({after_id}", max="+", count=count)
        return [_stored(entry_id, fields) for entry_id, fields in rows or ()]

    async def first_id(self, user_id: int) -> str | None:
        rows: Any = await self.client.xrange(self.stream_key(user_id), min="-", max="+", count=1)
        return str(rows[0][0].decode()) if rows else None

    async def last_id(self, user_id: int) -> str:
        rows: Any = await self.client.xrevrange(self.stream_key(user_id), max="+", min="-", count=1)
        return str(rows[0][0].decode()) if rows else "0-0"

    async def tails(self, user_ids: list[int]) -> tuple[dict[int, str], int]:
        """The last entry id of each user's stream (users without one are left out) and Redis's clock in
        Unix milliseconds, in one round trip."""
        async with self.client.pipeline(transaction=False) as pipe:
            for uid in user_ids:
                pipe.xrevrange(self.stream_key(uid), max="+", min="-", count=1)
            pipe.time()
            results: list[Any] = await pipe.execute()
        seconds, micros = results[-1]
        tails = {uid: _text(rows[0][0]) for uid, rows in zip(user_ids, results[:-1], strict=True) if rows}
        return tails, int(seconds) * 1000 + int(micros) // 1000

    async def info(self, user_id: int) -> StreamInfo:
        """What the user's stream holds, in one round trip (XINFO STREAM)."""
        try:
            raw: Any = await self.client.xinfo_stream(self.stream_key(user_id))
        except aioredis.ResponseError:
            return StreamInfo(exists=False)
        first, last = raw.get("first-entry"), raw.get("last-entry")
        return StreamInfo(
            exists=True,
            first=_text(first[0]) if first else None,
            last=_text(last[0]) if last else None,
            trimmed=int(raw.get("entries-added", 0)) > int(raw.get("length", 0)),
            max_deleted=_text(raw.get("max-deleted-entry-id")) or None,
        )


@dataclass(frozen=True)
class StreamInfo:
    exists: bool
    first: str | None = None
    last: str | None = None
    trimmed: bool = False  # entries were removed from the head (MAXLEN) or deleted
    max_deleted: str | None = None

    @property
    def tail(self) -> str:
        return self.last or "0-0"

    def is_lost(self, since: str) -> bool:
        """True when events after ``since`` may be gone, so the client must resync.

        ``since`` is a real event id (its time part is not 0) or ``0-N``, which asks for everything kept:
        * a real id whose stream no longer exists was lost (Redis restarted without persistence, or the
          stream expired, which takes 30 days without an event, so nothing newer can have been missed);
        * a real id after the stream's last entry names events the stream lost;
        * a real id before the first entry is not in this stream: trimmed away, or from an earlier
          incarnation of the stream (lost and made anew);
        * an entry deleted after ``since`` is lost;
        * ``0-N`` on a stream that never lost an entry replays everything; once anything was trimmed, resync.
        """
        position = parse_stream_id(since)
        if position[0] == 0:
            return self.exists and (self.trimmed or (self.max_deleted is not None and self.max_deleted != "0-0"))
        if not self.exists or self.last is None:
            return True
        if position > parse_stream_id(self.last):
            return True
        if self.first is not None and position < parse_stream_id(self.first):
            return True
        return self.max_deleted is not None and position < parse_stream_id(self.max_deleted)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else str(value)


def _stored(entry_id: bytes | str, fields: dict[bytes, bytes]) -> StoredEvent:
    eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return StoredEvent(eid, fields[b"t"].decode(), fields[b"d"])
