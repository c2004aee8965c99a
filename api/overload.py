"""Overload and unreachable dependencies are 503 ``unavailable`` with ``Retry-After``, never a 500.

Every pool waits with a deadline (storage/redis.py, storage/db.py, domain/passwords.py, actors/runtime/client.py);
what each raises past it, and what an unreachable, restarting or too slow PostgreSQL, Redis or Ray raises, is
known in one place, storage/outage.py. This is its answer for the HTTP error handlers (api/errors.py), the
codec's last resort (api/codec.py) and the socket handshake (api/ws/route.py): a 503, with the failure counted in
its dependency's outage (one warning when the outage starts, one info line when it ends, per process: not a line
per request). Anything else is a bug: None here, a 500 with a request id, logged with its stack by the caller.
"""

from __future__ import annotations

import logging

from domain.errors import Unavailable
from storage.outage import OUTAGE_TYPES, unavailable_or_none

log = logging.getLogger("i9lyfe.overload")

# The exception classes the HTTP handlers are registered for (an instance may still be a bug: as_unavailable decides).
SHED: tuple[type[Exception], ...] = OUTAGE_TYPES


def as_unavailable(exc: BaseException) -> Unavailable | None:
    """The 503 to answer ``exc`` with, or None when ``exc`` is a bug (a 500)."""
    return unavailable_or_none(exc, "requests are answered 503", log)
