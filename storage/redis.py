"""Redis client and key naming. Every key lives under one configurable prefix."""

from __future__ import annotations

import redis.asyncio as aioredis


def create_client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, decode_responses=False, health_check_interval=30)


class Keys:
    """All Redis key names, so that nothing writes outside the prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    def node_counter(self) -> str:
        return self("idgen", "node")

    def revoked_session(self, sid: int) -> str:
        return self("sess", "revoked", sid)

    def rate(self, bucket: str, subject: str) -> str:
        return self("rl", bucket, subject)

    def gateway_channel(self, gateway_id: str) -> str:
        return self("gw", gateway_id)

    def presence_channel(self, user_id: int) -> str:
        return self("topic", "presence", user_id)

    def post_channel(self, post_id: int) -> str:
        return self("topic", "post", post_id)


async def lease_node_id(client: aioredis.Redis, keys: Keys) -> int:
    """A node number for the id generator, distinct among the processes sharing this Redis (mod 1024)."""
    value = await client.incr(keys.node_counter())
    return int(value) % 1024
