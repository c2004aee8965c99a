"""``python -m api``: serve the API with uvicorn (uvloop, httptools) on HOST:PORT with WORKERS processes."""

from __future__ import annotations

import uvicorn

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
        ws="websockets",
        ws_per_message_deflate=False,
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
        log_config=None,
    )


if __name__ == "__main__":
    main()
