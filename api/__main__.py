"""``python -m api``: serve the API with uvicorn (uvloop, httptools) on HOST:PORT with WORKERS processes."""

from __future__ import annotations

import asyncio
import sys

import asyncpg
import uvicorn

from actors.runtime.topology import ShardCountMismatch, check_shard_count
from api import metrics_dir
from domain.events import PROTOCOL_MAX_BYTES
from storage.config import ConfigError, Settings, load_settings


async def _preflight(settings: Settings) -> None:
    """Checks that must stop the whole server, not one worker (uvicorn's supervisor exits 0 when one fails)."""
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1)
    try:
        await check_shard_count(pool, settings)
    finally:
        await pool.close()


def main() -> None:
    try:  # an unsafe production configuration (storage/config.py production_problems) stops here
        settings = load_settings()
    except ConfigError as exc:
        print(f"i9lyfe: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from exc
    try:
        asyncio.run(_preflight(settings))
    except ShardCountMismatch as exc:
        print(f"i9lyfe: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(3) from exc
    metrics_dir.prepare(settings)  # PROMETHEUS_MULTIPROC_DIR, emptied, before any worker starts (GET /metrics)
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="api.http_protocol:LimitedHttpToolsProtocol",  # httptools with request heads capped (431)
        ws="websockets-sansio",
        ws_per_message_deflate=False,  # 48 KB per idle socket with deflate vs ~25 KB without (DESIGN.md 9)
        ws_max_size=PROTOCOL_MAX_BYTES,
        ws_ping_interval=25.0,
        ws_ping_timeout=20.0,
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=max(1, round(settings.drain_s)),
        timeout_keep_alive=max(1, round(settings.http_keepalive_s)),
        log_config=None,
    )


if __name__ == "__main__":
    main()
