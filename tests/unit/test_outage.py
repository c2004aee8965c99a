"""storage/outage.py: which failures are outages of which dependency, and one warning per outage (not per
failure), one info line when it ends; the failures themselves are real where a real one is cheap to get (a refused
connection of asyncpg and of redis-py, Ray's own exception classes)."""

from __future__ import annotations

import asyncio
import errno
import logging

import asyncpg
import pytest
import ray.exceptions
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from actors.runtime.cluster import free_port
from domain.errors import Unavailable
from storage.db import PoolTimeout
from storage.ids import NodeNotHeld
from storage.outage import Outages, PoolLogFilter, dependency_of, unavailable_or_none


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outages(clock: Clock) -> Outages:
    return Outages(clock=clock, quiet_s=10.0)


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "test.outage" and r.levelno == level]


LOG = logging.getLogger("test.outage")


@pytest.mark.parametrize(
    ("exc", "dependency"),
    [
        (asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"), "postgresql"),
        (asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"), "postgresql"),
        (
            asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
            "postgresql",
        ),
        (asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"), "postgresql"),
        (asyncpg.exceptions.InterfaceError("cannot call Connection.fetch(): connection is closed"), "postgresql"),
        (PoolTimeout("no database connection became free within 2 s"), "postgresql"),
        (redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."), "redis"),
        (redis_errors.ConnectionError("No connection available."), "redis"),
        (redis_errors.TimeoutError("Timeout reading from socket"), "redis"),
        (redis_errors.BusyLoadingError("Redis is loading the dataset in memory"), "redis"),
        (NodeNotHeld("no id node lease is held by this process right now"), "redis"),
        (ray.exceptions.ActorDiedError(), "ray"),
        (ray.exceptions.ActorUnavailableError("restarting", None), "ray"),
        (ray.exceptions.GetTimeoutError("get timed out"), "ray"),
        (ray.exceptions.RayTaskError("op", "tb", ConnectionRefusedError(111, "x")).as_instanceof_cause(), "other"),
        (TimeoutError(), "other"),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "other"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "other"),
        (Unavailable("The realtime service did not answer in time."), "other"),
        (ExceptionGroup("both", [TimeoutError(), redis_errors.TimeoutError()]), "other"),
    ],
)
def test_failures_that_say_a_dependency_is_down_or_overloaded_name_it(exc: BaseException, dependency: str) -> None:
    assert dependency_of(exc) == dependency


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("bug"),
        KeyError("x"),
        ValueError("bad data"),
        FileNotFoundError(errno.ENOENT, "No such file or directory"),
        PermissionError(errno.EACCES, "Permission denied"),
        asyncpg.exceptions.UniqueViolationError("duplicate key value violates unique constraint"),
        asyncpg.exceptions.UndefinedTableError('relation "hashtags" does not exist'),
        asyncpg.exceptions.InterfaceError("cannot perform operation: another operation is in progress"),
        redis_errors.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        redis_errors.AuthenticationError("invalid username-password pair"),
        ray.exceptions.RayTaskError("op", "tb", KeyError("x")).as_instanceof_cause(),
        ExceptionGroup("mixed", [TimeoutError(), KeyError("x")]),
    ],
)
def test_bugs_and_bad_data_are_not_outages(exc: BaseException) -> None:
    assert dependency_of(exc) is None


async def test_a_refused_connection_is_named_by_the_library_that_made_it() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(OSError) as pg:
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", timeout=5)
    assert dependency_of(pg.value) == "postgresql"  # asyncpg lets the socket's own error through
    client = aioredis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=5)
    try:
        with pytest.raises(redis_errors.ConnectionError) as rd:
            await client.ping()
    finally:
        await client.aclose()
    assert dependency_of(rd.value) == "redis"


async def test_our_deadline_around_a_dependency_that_does_not_answer_names_that_dependency() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=60)
    try:
        with pytest.raises(TimeoutError) as pg:
            async with asyncio.timeout(0.2):
                await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", timeout=60)
        with pytest.raises(TimeoutError) as rd:
            async with asyncio.timeout(0.2):
                await client.ping()
        with pytest.raises(TimeoutError) as ours:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
    assert (dependency_of(pg.value), dependency_of(rd.value), dependency_of(ours.value)) == (
        "postgresql",
        "redis",
        "other",
    )


def test_an_outage_logs_one_warning_then_counts_and_one_info_line_when_it_ends(
    outages: Outages, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test.outage")
    for n in range(50):
        clock.now += 0.1
        assert outages.note("writes failed", redis_errors.ConnectionError(f"refused {n}"), LOG)
    assert outages.down("redis") and outages.failures("redis") == 50
    [warning] = records(caplog, logging.WARNING)
    assert warning.getMessage().startswith("redis unavailable: writes failed")
    assert warning.fields == {"dependency": "redis", "error": "ConnectionError: refused 0"}  # type: ignore[attr-defined]
    assert warning.exc_info is None
    clock.now += 1.0
    outages.ok("redis")
    outages.ok("redis")  # already over: nothing more
    [info] = records(caplog, logging.INFO)
    assert info.getMessage() == "redis available again"
    assert info.fields == {"dependency": "redis", "failures": 50, "duration_s": 5.9}  # type: ignore[attr-defined]
    assert not outages.down("redis")
    outages.note("writes failed", redis_errors.ConnectionError("refused again"), LOG)  # a new outage
    assert len(records(caplog, logging.WARNING)) == 2 and outages.failures("redis") == 1


def test_dependencies_have_outages_of_their_own(outages: Outages, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="test.outage")
    outages.note("a", asyncpg.exceptions.CannotConnectNowError("starting up"), LOG)
    outages.note("b", redis_errors.TimeoutError("slow"), LOG)
    outages.note("c", asyncpg.exceptions.CannotConnectNowError("starting up"), LOG)
    outages.ok("redis")
    assert len(records(caplog, logging.WARNING)) == 2
    assert outages.down("postgresql") and not outages.down("redis")


def test_an_outage_nobody_sees_end_is_over_once_it_has_not_failed_for_a_while(
    outages: Outages, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test.outage")
    outages.note("shard calls", ray.exceptions.ActorDiedError(), LOG)
    clock.now += 9.0
    outages.note("shard calls", ray.exceptions.ActorDiedError(), LOG)  # the same outage
    assert len(records(caplog, logging.WARNING)) == 1
    clock.now += 10.0
    outages.note("shard calls", ray.exceptions.ActorDiedError(), LOG)  # quiet for 10 s: a new one
    assert len(records(caplog, logging.WARNING)) == 2
    [ended] = records(caplog, logging.INFO)
    assert ended.getMessage() == "ray available again (no failure for 10 s)"
    assert ended.fields["failures"] == 2  # type: ignore[attr-defined]


def test_a_failure_that_is_not_an_outage_is_logged_each_time_with_its_stack(
    outages: Outages, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test.outage")
    noted = []
    for _ in range(3):
        try:
            raise KeyError("missing")
        except KeyError as exc:
            noted.append(outages.note("after-commit effects not carried out", exc, LOG))
    assert noted == [False, False, False]
    logged = records(caplog, logging.WARNING)
    assert len(logged) == 3 and all(r.exc_info is not None for r in logged)
    assert logged[0].getMessage() == "after-commit effects not carried out"
    assert not outages.down("other")


def test_recovery_callbacks_run_once_per_recovery_and_a_failing_one_is_logged(outages: Outages) -> None:
    calls: list[str] = []

    def broken() -> None:
        raise RuntimeError("callback bug")

    outages.on_recovery("redis", broken)
    remove = outages.on_recovery("redis", lambda: calls.append("checked"))
    outages.ok("redis")  # no outage: no recovery
    outages.note("x", redis_errors.ConnectionError("refused"), LOG)
    outages.ok("redis")
    outages.ok("redis")
    assert calls == ["checked"]
    remove()
    outages.note("x", redis_errors.ConnectionError("refused"), LOG)
    outages.ok("redis")
    assert calls == ["checked"]


def test_unavailable_or_none_answers_an_outage_with_a_503_and_a_bug_with_none(
    outages: Outages, caplog: pytest.LogCaptureFixture
) -> None:
    shed = unavailable_or_none(asyncpg.exceptions.CannotConnectNowError("starting up"), "ops", LOG, outages=outages)
    assert isinstance(shed, Unavailable) and (shed.http_status, shed.code, shed.retry_after) == (503, "unavailable", 2)
    assert "database" in shed.message and "starting up" not in shed.message  # the cause stays in the log
    assert unavailable_or_none(ValueError("bad"), "ops", LOG, outages=outages) is None
    ours = Unavailable("busy", retry_after=3)
    assert unavailable_or_none(ours, "ops", LOG, outages=outages) is ours
    assert outages.failures("postgresql") == 1


def test_a_library_logging_each_failed_retry_with_its_stack_is_counted_instead(
    outages: Outages, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    library = logging.getLogger("test.outage.library")
    library.addFilter(PoolLogFilter("restoring the pool's floor failed", LOG, outages))
    try:
        for _ in range(5):
            try:
                raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
            except ConnectionRefusedError:
                library.warning("Failed to restore the pool connection floor; retrying", exc_info=True)
        library.warning("Pool.close() is taking over 60 seconds to complete.")  # no failure attached: kept
        try:
            raise KeyError("bug")
        except KeyError:
            library.warning("something else failed", exc_info=True)  # not an outage: kept, with its stack
    finally:
        library.filters.clear()
    kept = [r.getMessage() for r in caplog.records if r.name == "test.outage.library"]
    assert kept == ["Pool.close() is taking over 60 seconds to complete.", "something else failed"]
    assert [r.getMessage() for r in records(caplog, logging.WARNING)] == [
        "other unavailable: restoring the pool's floor failed; further failures are counted until it answers again"
    ]
    assert outages.failures("other") == 5
