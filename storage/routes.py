"""Where each user is connected, mirrored into Redis, and delivery to them in one script (DESIGN.md 2b).

The UserShard is the single writer of a user's presence (actors/user.py); it mirrors the set of gateways holding
the user's sockets into ``route:{<user>}`` (a set, refreshed by the shard well within ``ROUTE_TTL_S``, so the routes
of a shard that died fade). Whoever commits an event then delivers it without a second Ray hop:

* ``deliver``: one script for a batch of committed events: each is appended to its recipients' streams
  (idempotent per outbox event, as storage/streams.py's append: a retried event gets its recorded ids back) and
  every (recipient, entry) goes to the gateways on the recipient's route, one PUBLISH per gateway for the whole
  batch. Appending and reading the route in one script closes the race with a socket that connects meanwhile:
  either the route was there (the event is published) or the socket's replay, which starts after its route is
  written, finds the entry in the stream.
* ``push``: entries already in the streams (the feed fan-out's) or live-only ones (typing: no id) to the
  recipients' gateways, one PUBLISH per gateway.

A gateway's message is a MessagePack array of items ``[user id, event id, type, data (bin), previous id]``
(api/ws/gateway.py reads it); the scripts splice the items from pieces packed here, so no 64-bit id or binary
payload passes through Lua's numbers or strings-as-text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import redis.asyncio as aioredis

from storage.redis import Keys
from storage.streams import DEDUPE_TTL_S, STREAM_MAXLEN, STREAM_TTL_S, Appended

ROUTE_TTL_S = 90  # the UserShard rewrites its users' routes every ROUTE_REFRESH_S
ROUTE_REFRESH_S = 20.0

# Shared by both scripts: group items by the gateways on each recipient's route, then one PUBLISH per gateway.
_PUBLISH = """
local function publish(prefix, routes)
  local gateways = {}
  local order = {}
  for _, r in ipairs(routes) do
    local members = redis.call('SMEMBERS', r[1])
    for _, gw in ipairs(members) do
      local items = gateways[gw]
      if items == nil then
        items = {}
        gateways[gw] = items
        order[#order + 1] = gw
      end
      items[#items + 1] = r[2]
    end
  end
  for _, gw in ipairs(order) do
    local items = gateways[gw]
    local n = #items
    local head
    if n < 16 then
      head = string.char(0x90 + n)
    elseif n < 65536 then
      head = string.char(0xdc, math.floor(n / 256), n % 256)
    else
      head = string.char(0xdd, math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
        math.floor(n / 256) % 256, n % 256)
    end
    redis.call('PUBLISH', prefix .. gw, head .. table.concat(items))
  end
  return #order
end

local function str(s)
  -- a MessagePack str (stream ids and event types: short ASCII)
  return string.char(0xd9, #s) .. s
end

local function bin(s)
  local n = #s
  if n < 256 then
    return string.char(0xc4, n) .. s
  elseif n < 65536 then
    return string.char(0xc5, math.floor(n / 256), n % 256) .. s
  end
  return string.char(0xc6, math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256) .. s
end
"""

# KEYS: per event: its dedupe hash, then its recipients' streams, then their routes.
# ARGV: maxlen, stream ttl, dedupe ttl, gateway channel prefix, number of events; then per event: its number of
# recipients, its type, its data (MessagePack); then per recipient: the id (decimal) and the id packed.
# Returns per event: {user, "<id> <previous id>", ...} or {'err', why} (that event alone is not appended).
_DELIVER = (
    _PUBLISH
    + """
local maxlen, ttl, dedupe_ttl, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local events = tonumber(ARGV[5])
local k, a = 1, 6
local routes = {}
local out = {}
for e = 1, events do
  local n = tonumber(ARGV[a])
  local type_, data = ARGV[a + 1], ARGV[a + 2]
  a = a + 3
  local dedupe = KEYS[k]
  local users, packed = {}, {}
  for i = 1, n do
    users[i] = ARGV[a]
    packed[i] = ARGV[a + 1]
    a = a + 2
  end
  local ids = {}
  local failed = nil
  local done = redis.call('HGETALL', dedupe)
  if #done > 0 then
    for i = 1, #done, 2 do
      ids[done[i]] = done[i + 1]
    end
  else
    for i = 1, n do
      local kind = redis.call('TYPE', KEYS[k + i])['ok']
      if kind ~= 'stream' and kind ~= 'none' then
        -- checked before any XADD of the event, so that it writes nothing and its retry duplicates nothing
        failed = 'WRONGTYPE events key ' .. KEYS[k + i] .. ' holds a ' .. kind
        break
      end
    end
    if failed == nil and n > 0 then
      local record = {}
      for i = 1, n do
        local stream = KEYS[k + i]
        local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
        local prev = '0-0'
        if #last > 0 then
          prev = last[1][1]
        end
        local id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 't', type_, 'd', data)
        redis.call('EXPIRE', stream, ttl)
        ids[users[i]] = id .. ' ' .. prev
        record[#record + 1] = users[i]
        record[#record + 1] = id .. ' ' .. prev
      end
      redis.call('HSET', dedupe, unpack(record))
      redis.call('EXPIRE', dedupe, dedupe_ttl)
    end
  end
  if failed ~= nil then
    out[#out + 1] = {'err', failed}
  else
    local flat = {}
    local type_packed, data_packed = str(type_), bin(data)
    for i = 1, n do
      local at = ids[users[i]]
      if at ~= nil then
        flat[#flat + 1] = users[i]
        flat[#flat + 1] = at
        local sep = string.find(at, ' ', 1, true)
        local item = string.char(0x95) .. packed[i] .. str(string.sub(at, 1, sep - 1)) .. type_packed
          .. data_packed .. str(string.sub(at, sep + 1))
        routes[#routes + 1] = {KEYS[k + n + i], item}
      end
    end
    out[#out + 1] = flat
  end
  k = k + 1 + 2 * n
end
publish(prefix, routes)
return out
"""
)

# KEYS: the recipients' routes; ARGV: the gateway channel prefix, then one packed item per key.
_PUSH = (
    _PUBLISH
    + """
local routes = {}
for i = 1, #KEYS do
  routes[i] = {KEYS[i], ARGV[i + 1]}
end
return publish(ARGV[1], routes)
"""
)

PushItem = tuple[int, str | None, str, bytes, str | None]  # (user id, event id or None, type, data, previous id)
DeliverItem = tuple[int, Sequence[int], str, bytes]  # (outbox id, recipients, type, data)


@dataclass(frozen=True)
class DeliverFailed(Exception):
    """One event of a batch could not be appended (its recipients' stream keys hold something else)."""

    reason: str

    def __str__(self) -> str:
        return self.reason


_PACK = msgpack.Packer(use_bin_type=True)


def _packed_user(user_id: int) -> bytes:
    packed: bytes = _PACK.pack(user_id)
    return packed


class Routes:
    """The route mirror and the delivery scripts of one process."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._deliver = client.register_script(_DELIVER)
        self._push = client.register_script(_PUSH)
        self.prefix = keys.gateway_channel("")

    def route_key(self, user_id: int) -> str:
        return self.keys.route(user_id)

    def mirror(self, pipe: Any, user_id: int, gateways: Iterable[str]) -> None:
        """Queue on ``pipe`` the replacement of the user's route by ``gateways`` (none: the user is offline)."""
        key = self.route_key(user_id)
        pipe.delete(key)
        members = sorted(gateways)
        if members:
            pipe.sadd(key, *members)
            pipe.expire(key, ROUTE_TTL_S)

    async def mirror_all(self, routes: Mapping[int, Iterable[str]], chunk: int = 500) -> None:
        """Rewrite these users' routes (the UserShard's periodic refresh), ``chunk`` users per round trip."""
        items = list(routes.items())
        for start in range(0, len(items), chunk):
            async with self.client.pipeline(transaction=False) as pipe:
                for user_id, gateways in items[start : start + chunk]:
                    self.mirror(pipe, user_id, gateways)
                await pipe.execute()

    async def gateways(self, user_id: int) -> set[str]:
        members = await self.client.smembers(self.route_key(user_id))  # type: ignore[misc]
        return {m.decode() if isinstance(m, bytes) else str(m) for m in members}

    async def deliver(self, events: Sequence[DeliverItem]) -> list[dict[int, Appended] | DeliverFailed]:
        """Append each committed event to its recipients' streams and publish the batch to their gateways, in one
        script. Returns per event where it landed (user id -> entry id and the one before), or why it failed."""
        keys: list[str] = []
        args: list[Any] = [STREAM_MAXLEN, STREAM_TTL_S, DEDUPE_TTL_S, self.prefix, len(events)]
        for outbox_id, recipients, type_, data in events:
            keys.append(self.keys("evd", outbox_id))
            keys.extend(self.keys.events(u) for u in recipients)
            keys.extend(self.route_key(u) for u in recipients)
            args.extend((len(recipients), type_, data))
            for user_id in recipients:
                args.extend((user_id, _packed_user(user_id)))
        raw = await self._deliver(keys=keys, args=args)
        out: list[dict[int, Appended] | DeliverFailed] = []
        for flat in raw:
            parts = [x.decode() if isinstance(x, bytes) else str(x) for x in flat]
            if parts[:1] == ["err"]:
                out.append(DeliverFailed(parts[1]))
                continue
            out.append({int(parts[i]): Appended(*parts[i + 1].split(" ", 1)) for i in range(0, len(parts), 2)})
        return out

    async def push(self, items: Sequence[PushItem]) -> int:
        """Publish items to the gateways on their users' routes; returns how many gateways got a message."""
        if not items:
            return 0
        keys = [self.route_key(item[0]) for item in items]
        args: list[Any] = [self.prefix]
        args.extend(msgpack.packb(list(item), use_bin_type=True) for item in items)
        return int(await self._push(keys=keys, args=args))
