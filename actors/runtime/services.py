"""The services a domain operation needs, built once per process (api worker or shard actor)."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
import redis.asyncio as aioredis

from domain.passwords import PasswordService
from domain.tokens import TokenService
from storage import db, ids
from storage import redis as rstore
from storage.config import Settings
from storage.mail import Mailer
from storage.media import MediaBackend
from storage.media.backends import create_backend, url_signer
from storage.timelines import Timelines


@dataclass
class Services:
    settings: Settings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    keys: rstore.Keys
    tokens: TokenService
    passwords: PasswordService
    mailer: Mailer
    node_lease: rstore.NodeLease
    timelines: Timelines
    _media_backend: MediaBackend | None = field(default=None, repr=False)

    @property
    def media_backend(self) -> MediaBackend:
        """The process's media backend (storage/media), made on first use: a gateway that never touches media
        never opens a GCS client."""
        if self._media_backend is None:
            self._media_backend = create_backend(self.settings, url_signer(self.settings))
        return self._media_backend

    @staticmethod
    async def create(settings: Settings, *, pool_max: int | None = None) -> Services:
        """Connect to PostgreSQL and Redis and lease an id node (``NoFreeNode`` if none is free), renewed
        until ``close``."""
        client = rstore.create_client(settings.redis_url, max_connections=settings.redis_pool_max)
        keys = rstore.Keys(settings.redis_prefix)
        lease = rstore.NodeLease(client, keys, ids.default_generator())
        try:
            await lease.acquire()
            pool = await db.create_pool(settings.database_url, settings.db_pool_min, pool_max or settings.db_pool_max)
        except BaseException:
            await lease.release()
            await client.aclose()
            raise
        lease.start_renewing()
        return Services(
            settings=settings,
            pool=pool,
            redis=client,
            keys=keys,
            tokens=TokenService(settings.jwt_secret, settings.jwt_issuer, settings.access_ttl_s),
            passwords=PasswordService(settings.hash_concurrency),
            mailer=Mailer(settings.smtp_url, settings.mail_from, settings.mail_dir),
            node_lease=lease,
            timelines=Timelines(client, keys, ttl_s=settings.feed_active_days * 24 * 3600),
        )

    async def close(self) -> None:
        self.passwords.close()
        backend, self._media_backend = self._media_backend, None
        if backend is not None:
            backend.close()
        await self.pool.close()
        await self.node_lease.release()
        await self.redis.aclose()

    async def deny_sessions(self, session_ids: list[int]) -> None:
        """Make access tokens of these sessions stop working at once, in every process (one round trip)."""
        if not session_ids:
            return
        ttl = self.settings.access_ttl_s + 60
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in session_ids:
                pipe.set(self.keys.revoked_session(sid), b"1", ex=ttl)
            await pipe.execute()

    async def is_session_denied(self, session_id: int) -> bool:
        return bool(await self.redis.exists(self.keys.revoked_session(session_id)))
