"""Graceful drain of a gateway on SIGTERM (and SIGINT: Ctrl-C in ``make run``).

uvicorn's own shutdown closes every socket with 1012 but no reason, and only after it has stopped listening.
Before handing the signal on to uvicorn, the gateway first refuses new sockets (503 with Retry-After), closes
its open sockets itself with 1012 and a reason that says to reconnect with ``since`` (to the restarted server or
another gateway: every event is in the user's stream, so none is lost), and waits, at most half of ``DRAIN_S``,
for their handlers to finish. uvicorn then finishes in-flight requests within the rest of ``DRAIN_S``
(``timeout_graceful_shutdown``) and exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from api.ws.gateway import Gateway

log = logging.getLogger("i9lyfe.gateway")

DRAIN_REASON = "server restarting; reconnect with since"

Handler = Callable[[int, FrameType | None], Any]


def install(gateway: Gateway, drain_s: float) -> None:
    """Put the drain in front of the signal handlers uvicorn installed for this process (call at startup)."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def drain_then(original: Handler, signum: int, frame: FrameType | None) -> None:
        try:
            closed = await gateway.drain(DRAIN_REASON, deadline_s=max(0.5, drain_s / 2))
            log.info("gateway drained", extra={"fields": {"sockets": closed, "signal": signum}})
        except Exception:
            log.exception("gateway drain failed")
        finally:
            original(signum, frame)  # uvicorn's own handler: stop serving, finish requests, run the lifespan end

    for sig in (signal.SIGTERM, signal.SIGINT):
        original = signal.getsignal(sig)
        if not callable(original):
            continue

        def handler(signum: int, frame: FrameType | None, original: Handler = original) -> None:
            if gateway.draining:  # a second signal: no more waiting
                original(signum, frame)
                return
            gateway.draining = True

            def start() -> None:
                task = loop.create_task(drain_then(original, signum, frame))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

            loop.call_soon_threadsafe(start)

        signal.signal(sig, handler)
