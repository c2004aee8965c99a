"""Overload and unreachable dependencies are 503 ``unavailable`` with ``Retry-After``, never a 500.

Every pool waits with a deadline (storage/redis.py, storage/db.py, domain/passwords.py, actors/runtime/client.py); what
each raises past it, and what an unreachable or too slow PostgreSQL or Redis raises, is listed here once, for
the HTTP error handlers (api/errors.py), the codec's last resort (api/codec.py) and the socket handshake
(api/ws/route.py). They are logged as one warning line, without a stack: they say the server is busy, not
that the code is wrong.
"""

from __future__ import annotations

import logging

import asyncpg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from domain.errors import Unavailable

log = logging.getLogger("i9lyfe.overload")

RETRY_AFTER_S = 1

SHED: tuple[type[Exception], ...] = (
    RedisConnectionError,  # a pool wait past its deadline ("No connection available."), refused, reset
    RedisTimeoutError,  # connect or reply past socket_timeout
    TimeoutError,  # storage.db.PoolTimeout, asyncpg's command_timeout, our own asyncio deadlines
    ConnectionError,  # the OS: refused, reset, broken pipe
    asyncpg.exceptions.PostgresConnectionError,  # the connection failed or went away
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, out of memory or disk
    asyncpg.exceptions.OperatorInterventionError,  # cannot connect now, admin shutdown, statement cancelled
)


def as_unavailable(exc: BaseException) -> Unavailable | None:
    """The 503 to answer ``exc`` with, or None when ``exc`` is a bug (a 500)."""
    if isinstance(exc, Unavailable):
        return exc
    if not isinstance(exc, SHED):
        return None
    log.warning("shed: a dependency is overloaded or unreachable", extra={"fields": {"error": _describe(exc)}})
    return Unavailable("The server is busy; try again shortly.", retry_after=RETRY_AFTER_S)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
