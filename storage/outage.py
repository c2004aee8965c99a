"""Which failures mean a dependency is down or overloaded, and one warning per outage instead of one per failure.

A dependency that is down (PostgreSQL, Redis, Ray) is an overload, not a bug (DESIGN.md 2b): the caller answers
503 ``unavailable`` with Retry-After, logs the outage once, and recovers without a restart. This module is the one
place that knows those failures:

* ``dependency_of(exc)``: ``"postgresql"``, ``"redis"``, ``"ray"`` or ``"other"`` when ``exc`` says a dependency
  is unreachable, restarting or past its deadline (a pool wait, a connect, a reply, a Ray call); None when it is a
  bug or bad data (a 500, logged with its stack).
* ``OUTAGES``: this process's tracker. The first failure of an outage logs one warning (what failed, and why); the
  failures after it are only counted; the dependency's first success afterwards (``ok``: a new PostgreSQL
  connection or a pool acquire, a new Redis connection's handshake) ends the outage with one info line (failures,
  seconds); an outage of a dependency nobody reports successes of (Ray, "other") ends after ``QUIET_S`` without
  failures.
  Callbacks registered with ``on_recovery`` run then (the id-node lease is checked at once).
* ``unavailable_or_none(exc, what, log)``: for code that turns a failure into an answer (a shard op, a route):
  the ``Unavailable`` to answer with, the failure counted, or None for a bug.

Failures that are not outages are logged one by one, with their stack: they are bugs or bad data.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

import asyncpg
from redis import exceptions as redis_errors

from domain.errors import Unavailable
from storage.ids import NodeNotHeld

Dependency = Literal["postgresql", "redis", "ray", "other"]
DEPENDENCIES: tuple[Dependency, ...] = ("postgresql", "redis", "ray", "other")

log = logging.getLogger("i9lyfe.outage")

RETRY_AFTER_S = 2  # what a 503 for a dependency that is down tells the client: a restart or failover takes seconds
QUIET_S = 10.0  # an outage nobody saw end (no ``ok``) is over once its dependency has not failed for this long

_POSTGRES_DOWN: tuple[type[Exception], ...] = (
    asyncpg.exceptions.PostgresConnectionError,  # the connection failed, was refused or went away (class 08)
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, out of memory or disk (class 53)
    asyncpg.exceptions.OperatorInterventionError,  # cannot connect now, admin or crash shutdown, cancelled (57)
)
_CLOSED_CONNECTION = ("connection is closed", "underlying connection is closed", "connection was closed")
# uvloop's RuntimeError for a write to a socket that the other side has just closed (seen when Redis went away
# in the middle of a connection's handshake: "unable to perform operation on <TCPTransport closed=True ...>; the
# handler is closed"), and asyncio's for a transport closed under a write.
_CLOSED_TRANSPORT = ("the handler is closed", "Transport is closed", "transport is closing")
_REDIS_DOWN: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError,  # refused, reset, closed by the server, a pool wait past its deadline, loading
    redis_errors.TimeoutError,  # connect or reply past socket_timeout
    redis_errors.ClusterDownError,  # a cluster without a primary for a slot (MasterDownError too)
    redis_errors.TryAgainError,  # a cluster resharding or failing over
    redis_errors.ReadOnlyError,  # a primary turned replica by a failover
    redis_errors.OutOfMemoryError,  # Redis at maxmemory: overloaded
)
_REDIS_BUGS: tuple[type[BaseException], ...] = (
    redis_errors.AuthenticationError,  # wrong password: configuration, not an outage
    redis_errors.AuthorizationError,
)
# Ray's failures that say a shard (or its node) is dead, restarting or overloaded; named, not imported: only
# actors/runtime imports Ray. A RayTaskError is an actor's own exception carried back: its cause decides.
_RAY_DOWN = frozenset(
    {
        "RayActorError",  # ActorDiedError, ActorUnavailableError: the actor is dead or restarting
        "GetTimeoutError",
        "NodeDiedError",
        "LocalRayletDiedError",
        "WorkerCrashedError",
        "ObjectLostError",  # OwnerDiedError and the other lost-object errors
        "PendingCallsLimitExceeded",  # an actor's queue is full: overloaded
        "ObjectStoreFullError",
        "OutOfMemoryError",
        "OutOfDiskError",
        "RpcError",
        "ActorUnschedulableError",
    }
)
# OS-level errors of a network call: refused, reset, unreachable, timed out, out of sockets. Not the others
# (a missing file or a permission is a bug).
_NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EHOSTDOWN,
        errno.ENOTCONN,
        errno.ESHUTDOWN,
        errno.EADDRNOTAVAIL,
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOBUFS,
    }
)
# Where a raw OSError or TimeoutError came from, by the modules in its traceback (asyncpg lets the socket's own
# errors through; redis-py wraps them; our deadlines raise TimeoutError around the call that was too slow).
_MODULES: tuple[tuple[str, Dependency], ...] = (("asyncpg", "postgresql"), ("redis", "redis"), ("ray", "ray"))


# The exception classes whose instances may be outages (the HTTP handlers are registered for these, and ask
# ``dependency_of`` about each instance: a FileNotFoundError is an OSError and a bug).
OUTAGE_TYPES: tuple[type[Exception], ...] = (
    OSError,  # TimeoutError, ConnectionError, socket errors
    *_POSTGRES_DOWN,
    asyncpg.exceptions.InterfaceError,
    *_REDIS_DOWN,
    NodeNotHeld,
)


def _ray_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__ if cls.__module__.split(".", 1)[0] == "ray"}


def _from_traceback(exc: BaseException) -> Dependency:
    """The dependency whose library raised ``exc`` (innermost frame first, through its causes), else "other"."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 8:
        seen.add(id(current))
        modules: list[str] = []
        tb: TracebackType | None = current.__traceback__
        while tb is not None:
            modules.append(str(tb.tb_frame.f_globals.get("__name__", "")))
            tb = tb.tb_next
        for module in reversed(modules):
            root = module.split(".", 1)[0]
            for name, dependency in _MODULES:
                if root == name:
                    return dependency
        current = current.__cause__ or current.__context__
    return "other"


def dependency_of(exc: BaseException) -> Dependency | None:
    """The dependency ``exc`` says is down or overloaded, or None when ``exc`` is not an outage (a bug, bad data,
    a refusal of ours)."""
    if isinstance(exc, Unavailable):
        return "other"
    if isinstance(exc, BaseExceptionGroup):
        parts = [dependency_of(e) for e in exc.exceptions]
        return parts[0] if parts and all(d is not None for d in parts) else None
    outage_of = getattr(type(exc), "outage_of", None)  # our own deadlines name their dependency (db.PoolTimeout)
    if outage_of in DEPENDENCIES:
        return outage_of  # type: ignore[no-any-return]
    if isinstance(exc, NodeNotHeld):  # the id node lease lives in Redis and could not be renewed
        return "redis"
    if isinstance(exc, _POSTGRES_DOWN):
        return "postgresql"
    if isinstance(exc, asyncpg.exceptions.InterfaceError):
        text = str(exc)
        return "postgresql" if any(phrase in text for phrase in _CLOSED_CONNECTION) else None
    if isinstance(exc, _REDIS_BUGS):
        return None
    if isinstance(exc, _REDIS_DOWN):
        return "redis"
    ray_names = _ray_names(exc)
    if ray_names:
        if any(name.startswith("RayTaskError") for name in ray_names):
            cause = getattr(exc, "cause", None)
            return dependency_of(cause) if isinstance(cause, BaseException) and cause is not exc else None
        if ray_names & _RAY_DOWN:
            return "ray"
        return None
    if isinstance(exc, TimeoutError | socket.gaierror | ConnectionError):
        return _from_traceback(exc)
    if isinstance(exc, RuntimeError) and any(phrase in str(exc) for phrase in _CLOSED_TRANSPORT):
        return _from_traceback(exc)
    if isinstance(exc, OSError):
        if exc.errno in _NETWORK_ERRNOS or str(exc).startswith("Multiple exceptions"):
            return _from_traceback(exc)  # asyncio's connect to several addresses joins their errors, errno None
        origin = _from_traceback(exc)  # a unix socket of PostgreSQL that is gone (ENOENT) is an outage too
        return origin if origin != "other" else None  # a missing file or a permission of ours is a bug
    return None


def is_outage(exc: BaseException) -> bool:
    return dependency_of(exc) is not None


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class _Outage:
    started: float
    what: str
    log: logging.Logger
    last_failure: float
    failures: int = 0
    ended: float | None = None


@dataclass
class Outages:
    """One process's outages, per dependency: one warning when an outage starts, one info line when it ends.

    An outage ends when its dependency answers again (``ok``), or, for a dependency nobody reports answers of
    (Ray, "other"), when it has not failed for ``quiet_s``: its next failure starts a new outage."""

    clock: Callable[[], float] = time.monotonic
    quiet_s: float = QUIET_S
    _current: dict[str, _Outage] = field(default_factory=dict)
    _listeners: dict[str, list[Callable[[], None]]] = field(default_factory=dict)

    def note(self, what: str, exc: BaseException, log: logging.Logger) -> bool:
        """A failure of ``what`` (the work that failed, said as a message: "after-commit effects not carried
        out"). An outage is counted (its first failure logs one warning on ``log``) and True is returned;
        anything else (a bug, bad data) is logged on ``log`` as each one was before, a warning, now with its stack,
        and False is returned."""
        dependency = dependency_of(exc)
        if dependency is None:
            log.warning(what, exc_info=exc, extra={"fields": {"error": describe(exc)}})
            return False
        self.failed(dependency, what, exc, log)
        return True

    def failed(self, dependency: Dependency, what: str, exc: BaseException | None, log: logging.Logger) -> None:
        """Count a failure of ``dependency``; the first of an outage logs one warning."""
        now = self.clock()
        outage = self._current.get(dependency)
        if outage is not None and outage.ended is None and now - outage.last_failure >= self.quiet_s:
            self._end(dependency, outage, outage.last_failure, quiet=True)
        if outage is None or outage.ended is not None:
            outage = self._current[dependency] = _Outage(now, what, log, now)
            log.warning(
                f"{dependency} unavailable: {what}; further failures are counted until it answers again",
                extra={"fields": {"dependency": dependency, "error": describe(exc) if exc is not None else ""}},
            )
        outage.failures += 1
        outage.last_failure = now

    def ok(self, dependency: Dependency) -> None:
        """``dependency`` answered: ends its outage, if one is going on (one info line). Cheap otherwise."""
        outage = self._current.get(dependency)
        if outage is not None and outage.ended is None:
            self._end(dependency, outage, self.clock(), quiet=False)

    def _end(self, dependency: Dependency, outage: _Outage, at: float, *, quiet: bool) -> None:
        outage.ended = at
        outage.log.info(
            f"{dependency} available again" + (f" (no failure for {self.quiet_s:g} s)" if quiet else ""),
            extra={
                "fields": {
                    "dependency": dependency,
                    "failures": outage.failures,
                    "duration_s": round(at - outage.started, 2),
                }
            },
        )
        for callback in list(self._listeners.get(dependency, ())):
            try:
                callback()
            except Exception:
                log.exception("recovery callback failed", extra={"fields": {"dependency": dependency}})

    def down(self, dependency: Dependency) -> bool:
        outage = self._current.get(dependency)
        return outage is not None and outage.ended is None

    def failures(self, dependency: Dependency) -> int:
        """Failures counted in the current (or last) outage of ``dependency``."""
        outage = self._current.get(dependency)
        return 0 if outage is None else outage.failures

    def on_recovery(self, dependency: Dependency, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (synchronous, quick) whenever an outage of ``dependency`` ends; returns a function
        that unregisters it."""
        listeners = self._listeners.setdefault(dependency, [])
        listeners.append(callback)

        def remove() -> None:
            if callback in listeners:
                listeners.remove(callback)

        return remove


OUTAGES = Outages()

_MESSAGES: dict[str, str] = {
    "postgresql": "The database is unavailable; try again shortly.",
    "redis": "A storage service is unavailable; try again shortly.",
    "ray": "The realtime service is restarting; try again shortly.",
    "other": "The server is busy; try again shortly.",
}


def unavailable_or_none(
    exc: BaseException, what: str, log: logging.Logger, *, outages: Outages = OUTAGES
) -> Unavailable | None:
    """The 503 to answer ``exc`` with (the failure counted as part of its dependency's outage: one warning per
    outage), or None when ``exc`` is a bug or bad data, which the caller logs with its stack (a 500)."""
    if isinstance(exc, Unavailable):
        return exc  # a deadline of ours already said so (and logged it if it wanted to)
    dependency = dependency_of(exc)
    if dependency is None:
        return None
    outages.failed(dependency, what, exc, log)
    return Unavailable(_MESSAGES[dependency], retry_after=RETRY_AFTER_S)


class PoolLogFilter(logging.Filter):
    """For a library logger that logs every failed retry with its stack (asyncpg's pool, restoring its
    connection floor, every 1-60 s per pool): an outage's failures are counted in ``OUTAGES`` instead (one warning
    per outage); any other record passes."""

    def __init__(self, what: str, log: logging.Logger, outages: Outages = OUTAGES) -> None:
        super().__init__()
        self.what = what
        self.log = log
        self.outages = outages

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        dependency = dependency_of(exc)
        if dependency is None:
            return True
        self.outages.failed(dependency, self.what, exc, self.log)
        return False
