"""``python -m api``: serve the API with uvicorn (uvloop, httptools) on HOST:PORT with WORKERS processes."""

from __future__ import annotations

import uvicorn

from actors.events import PROTOCOL_MAX_BYTES
from storage.config import load_settings


def main() -> None:
    settings = load_settings()
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=False,  # 48 KB per idle socket with deflate vs ~25 KB without (DESIGN.md 9)
        ws_max_size=PROTOCOL_MAX_BYTES,
        ws_ping_interval=25.0,
        ws_ping_timeout=20.0,
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
        log_config=None,
    )


if __name__ == "__main__":
    main()
