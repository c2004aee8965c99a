"""Overload in-process: the hash executor's bounded queue, and infrastructure errors as 503 ``unavailable``
with Retry-After (api/overload.py), also in the codec's last resort (the bursts in tests/api/test_load_bursts.py
cover them end to end)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
import orjson
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.types import Receive, Scope, Send

from api.codec import CodecMiddleware
from api.overload import as_unavailable
from domain.errors import DomainError, Unavailable
from domain.passwords import PasswordService
from storage.db import PoolTimeout
from tests.support import wait_until


def _true(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return predicate()

    return check


async def test_hashes_that_cannot_start_within_the_deadline_are_refused_with_503_not_queued() -> None:
    passwords = PasswordService(1, start_deadline_s=0.2)
    gate = threading.Event()
    try:
        blocker = asyncio.create_task(passwords._run(gate.wait))  # holds the one thread until set
        await wait_until(_true(lambda: passwords.running == 1))
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            await passwords.hash("pw-1")
        assert 0.15 < time.monotonic() - started < 2
        assert caught.value.http_status == 503 and caught.value.retry_after >= 1
        gate.set()
        assert await blocker is True
        assert await passwords.verify(await passwords.hash("pw-2"), "pw-2")
    finally:
        gate.set()
        passwords.close()


async def test_past_max_waiting_a_hash_is_refused_at_once() -> None:
    passwords = PasswordService(1, max_waiting=2, start_deadline_s=5)
    gate = threading.Event()
    try:
        blocker = asyncio.create_task(passwords._run(gate.wait))
        await wait_until(_true(lambda: passwords.running == 1))
        waiters = [asyncio.create_task(passwords.hash(f"pw-{i}")) for i in range(2)]
        await wait_until(_true(lambda: passwords.waiting == 2))
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await passwords.hash("one too many")
        assert time.monotonic() - started < 0.1
        gate.set()
        assert await blocker is True
        assert all(h.startswith("$argon2id$") for h in await asyncio.gather(*waiters))
        assert passwords.refused == 1
    finally:
        gate.set()
        passwords.close()


async def test_a_hash_whose_caller_gave_up_keeps_its_thread_until_it_is_done() -> None:
    """The slot follows the thread, not the awaiting task: a cancelled caller never lets a second hash run."""
    passwords = PasswordService(1, start_deadline_s=0.2)
    gate = threading.Event()
    try:
        blocker = asyncio.create_task(passwords._run(gate.wait))
        await wait_until(_true(lambda: passwords.running == 1))
        blocker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocker
        with pytest.raises(Unavailable):  # the thread still runs: no slot for another hash
            await passwords.hash("pw")
        gate.set()
        await wait_until(_true(lambda: passwords.running == 0))
        assert await passwords.hash("pw")  # the thread finished: its slot came back
    finally:
        gate.set()
        passwords.close()


@pytest.mark.parametrize(
    "exc",
    [
        RedisConnectionError("No connection available."),
        RedisTimeoutError("Timeout reading from socket"),
        PoolTimeout("no database connection became free within 2 s"),
        TimeoutError(),
        ConnectionRefusedError(111, "Connection refused"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    ],
)
def test_overload_and_unreachable_dependencies_are_503_with_retry_after(exc: Exception) -> None:
    shed = as_unavailable(exc)
    assert shed is not None
    assert (shed.http_status, shed.code) == (503, "unavailable") and shed.retry_after >= 1


@pytest.mark.parametrize("exc", [RuntimeError("bug"), KeyError("x"), ValueError("bad"), FileNotFoundError("f")])
def test_bugs_stay_500s(exc: Exception) -> None:
    assert as_unavailable(exc) is None


def test_an_unavailable_rebuilt_from_the_wire_still_carries_retry_after() -> None:
    err = DomainError.from_wire(Unavailable("shard slow", retry_after=3).to_wire())
    assert isinstance(err, Unavailable) and err.retry_after == 3


async def _redis_down(scope: Scope, receive: Receive, send: Send) -> None:
    raise RedisConnectionError("No connection available.")


async def test_the_codec_answers_an_escaped_infrastructure_error_with_503_and_retry_after() -> None:
    app = CodecMiddleware(_redis_down, 100)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        reply = await client.get("/")
    assert reply.status_code == 503
    assert reply.headers["retry-after"].isdigit()
    error = orjson.loads(reply.content)["error"]
    assert error["code"] == "unavailable" and set(error) == {"code", "message", "details"}
    assert "No connection" not in reply.text  # the cause stays in the log
