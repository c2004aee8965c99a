"""Redis client, key naming (every key lives under one configurable prefix) and the id generator's node lease.

An unreachable Redis is an outage (storage/outage.py): callers count its failures (one warning per outage per
process), and the first new connection that Redis accepts ends it. A Redis that comes back, even empty, needs no
restart: connections are made anew on demand (a pooled one the old server closed is replaced on its first use),
and the node lease is checked at once (``NodeLease``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from storage.ids import NODES, IdGenerator
from storage.outage import OUTAGES, is_outage

log = logging.getLogger("i9lyfe.node_lease")


async def _connected(connection: Any) -> None:
    """Each new connection's handshake (``redis_connect_func``), then: Redis answers, so an outage is over."""
    try:
        await connection.on_connect()
    except RuntimeError as exc:  # uvloop: the server closed the socket under the handshake (it is going away)
        raise RedisConnectionError(f"the connection closed during its handshake: {exc}") from exc
    OUTAGES.ok("redis")


def create_client(
    url: str, *, max_connections: int = 64, pool_timeout_s: float = 2.0, socket_timeout_s: float = 5.0
) -> aioredis.Redis:
    """A client on a bounded pool: at most ``max_connections`` connections (pub/sub ones included); a command
    that finds them all busy waits up to ``pool_timeout_s`` for one, then raises ``redis.ConnectionError("No
    connection available.")`` (the default pool would raise at once past its 100, and wait for nothing). Connecting
    and each reply are bounded by ``socket_timeout_s`` (``redis.TimeoutError``). The api answers these with 503."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout_s,
        socket_connect_timeout=socket_timeout_s,
        socket_timeout=socket_timeout_s,
        health_check_interval=30,
        # A connection the server closed (Redis restarted) is only found out when used: such a command is sent
        # once more on a new connection. Not past a timeout: under overload that would double the wait.
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        redis_connect_func=_connected,
    )
    return aioredis.Redis.from_pool(pool)


class Keys:
    """All Redis key names, so that nothing writes outside the prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    def node_counter(self) -> str:
        return self("idgen", "node")

    def node_lease(self, node: int) -> str:
        return self("idgen", "lease", node)

    def revoked_session(self, sid: int) -> str:
        return self("sess", "revoked", sid)

    def rate(self, bucket: str, subject: str) -> str:
        return self("rl", bucket, subject)

    def events(self, user_id: int) -> str:
        """The user's event stream. ``{<user>}`` is a Redis Cluster hash tag: a user's stream and timeline
        share a slot, so one script may touch both (storage/timelines.py)."""
        return self("events", f"{{{user_id}}}")

    def timeline(self, user_id: int) -> str:
        return self("tl", f"{{{user_id}}}")

    def timeline_version(self, user_id: int) -> str:
        """A random token set by every change to the user's timeline (storage/timelines.py): cached feed pages
        of the user are checked against it (api/response_cache.py)."""
        return self("tlv", f"{{{user_id}}}")

    def author_channel(self, user_id: int) -> str:
        """Live-only new posts of an author who is not fanned out (too many followers)."""
        return self("topic", "author", user_id)

    def route(self, user_id: int) -> str:
        """The gateways holding the user's sockets, mirrored by the user's shard (storage/routes.py); in the
        user's slot, beside the stream, so that one script appends and reads the route."""
        return self("route", f"{{{user_id}}}")

    def gateway_channel(self, gateway_id: str) -> str:
        return self("gw", gateway_id)

    def presence_channel(self, user_id: int) -> str:
        return self("topic", "presence", user_id)

    def post_channel(self, post_id: int) -> str:
        return self("topic", "post", post_id)

    def recommendations(self, user_id: int, snapshot: str) -> str:
        """One ranked recommendation list of a user (explore, or the feed past its timeline), kept for its
        cursors to page through (api/reads/explore.py); expires."""
        return self("recs", f"{{{user_id}}}", snapshot)

    def latest_recommendations(self, user_id: int, mode: str) -> str:
        """A user's latest ranking of ``mode`` with what it was made from, for their next first page (short)."""
        return self("recs", f"{{{user_id}}}", "latest", mode)

    def latest_suggestions(self, user_id: int, limit: int) -> str:
        """A user's latest suggestions (of ``limit`` people) with what they were made from (short)."""
        return self("sugg", f"{{{user_id}}}", limit)


RENEW_RETRY_S = 1.0  # after a failed renewal, the next try (Redis is down: the lease may be running out)


class NoFreeNode(RuntimeError):
    """Every id node number is leased by a live process: refuse to start rather than mint someone else's ids."""


# KEYS: the lease keys in the order to try; ARGV: owner token, ttl ms. The index of the key taken, or -1.
_ACQUIRE = """
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2]) then return i - 1 end
end
return -1
"""
# Compare-and-renew / compare-and-delete: only the owner token may extend or end its lease.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class NodeLease:
    """One node number (0..1023) of the id generator, leased under ``idgen:lease:<n>`` while this process lives.

    ``acquire`` takes a free node (SET NX with a TTL and a random owner token; the search starts at an INCR-based
    offset so that processes starting together try different nodes first, and covers every node in one
    atomic script); ``start_renewing`` extends it every TTL/3 (compare-and-renew); ``release`` stops renewing
    and deletes the key if it is still ours (compare-and-delete). After each acquisition and renewal the
    ``generator`` may mint with the node until ``started + ttl - margin`` (monotonic time, measured from
    before the command was sent, so it never outlasts the key). If a renewal finds the key gone or someone
    else's (the process stalled past the TTL, or Redis lost it), the node is dropped at once, the loss is
    logged as an error and another node is acquired: no id is ever minted with a node another process may
    hold, at the price of ``NodeNotHeld`` errors (503s) until a node is held again. Renewal failures of Redis itself
    are retried every ``RENEW_RETRY_S`` and logged once per outage (storage/outage.py); minting stops when the lease
    runs out meanwhile. When Redis answers again after an outage the lease is checked at once: a Redis restarted
    empty lost it, and another node is acquired.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        generator: IdGenerator | None = None,
        *,
        ttl_s: float = 30.0,
        nodes: int = NODES,
    ) -> None:
        if not 0 < nodes <= NODES:
            raise ValueError(f"nodes must be in 1..{NODES}")
        self.client = client
        self.keys = keys
        self.generator = generator
        self.ttl_s = ttl_s
        self.nodes = nodes
        self.node: int | None = None
        self.valid_until = -math.inf
        self.renewals = 0
        self._token = b""
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._task: asyncio.Task[None] | None = None
        self._forget_recovery: Callable[[], None] = lambda: None

    @property
    def ttl_ms(self) -> int:
        return max(1, round(self.ttl_s * 1000))

    @property
    def held(self) -> bool:
        return self.node is not None and time.monotonic() < self.valid_until

    def _hold(self, node: int, started: float) -> None:
        self.node = node
        self.valid_until = started + self.ttl_s * 0.9  # 10% margin for clock-rate differences
        if self.generator is not None:
            self.generator.hold(node, self.valid_until)

    def _drop(self) -> None:
        if self.node is not None and self.generator is not None:
            self.generator.drop(self.node)
        self.node = None
        self.valid_until = -math.inf

    async def acquire(self) -> int:
        """Lease a free node; ``NoFreeNode`` if every one is held by a live process."""
        if self.node is not None:
            raise RuntimeError(f"this lease already holds node {self.node}")
        offset = int(await self.client.incr(self.keys.node_counter())) % self.nodes
        order = [(offset + i) % self.nodes for i in range(self.nodes)]
        token = secrets.token_hex(16).encode()
        started = time.monotonic()
        index = int(await self._acquire(keys=[self.keys.node_lease(n) for n in order], args=[token, self.ttl_ms]))
        if index < 0:
            raise NoFreeNode(
                f"all {self.nodes} id generator nodes are leased by live processes (Redis keys "
                f"{self.keys('idgen', 'lease', '<n>')}); without a node of its own this process could mint ids "
                "that duplicate another process's, so it does not start: stop some processes, or wait up to "
                f"{self.ttl_s:g} s for the leases of crashed ones to expire"
            )
        self._token = token
        self._hold(order[index], started)
        return order[index]

    async def renew(self) -> bool:
        """Extend the lease if it is still ours. False (and the node dropped) if it was lost."""
        if self.node is None:
            return False
        started = time.monotonic()
        kept = int(await self._renew(keys=[self.keys.node_lease(self.node)], args=[self._token, self.ttl_ms]))
        if not kept:
            log.error(
                "id node lease lost: stopped minting ids with this node",
                extra={"fields": {"node": self.node, "key": self.keys.node_lease(self.node)}},
            )
            self._drop()
            return False
        self.renewals += 1
        self._hold(self.node, started)
        return True

    def start_renewing(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            wake = asyncio.Event()

            # Redis answers again after an outage: check the lease now (a Redis restarted empty lost it), not at the
            # next renewal, so that no id is minted with a node another process may take meanwhile.
            def check_now() -> None:
                loop.call_soon_threadsafe(wake.set)

            self._forget_recovery = OUTAGES.on_recovery("redis", check_now)
            self._task = loop.create_task(self._renew_forever(wake), name="node-lease-renewal")

    async def _renew_forever(self, wake: asyncio.Event) -> None:
        interval = self.ttl_s / 3
        wait = interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await wake.wait()
            wake.clear()
            wait = interval
            try:
                async with asyncio.timeout(interval):
                    if self.node is not None:
                        await self.renew()
                    if self.node is None:
                        node = await self.acquire()
                        log.info("id node lease re-acquired", extra={"fields": {"node": node}})
            except NoFreeNode as exc:
                log.error("id node lease: %s; retrying", exc)
            except Exception as exc:  # keep renewing whatever happened; minting stops by itself if the lease runs out
                # Redis unreachable: one warning per outage, and another try soon (the lease may run out meanwhile).
                if OUTAGES.note("id node lease renewal failed (retrying)", exc, log):
                    wait = min(interval, RENEW_RETRY_S)

    async def release(self) -> None:
        """Stop renewing and give the node back (if it is still ours); the generator stops minting with it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self._forget_recovery()
        node, token = self.node, self._token
        self._drop()
        if node is None:
            return
        try:
            await self._release(keys=[self.keys.node_lease(node)], args=[token])
        except Exception as exc:
            if not is_outage(exc):
                raise
            OUTAGES.note("id node lease release failed (it expires by itself)", exc, log)
