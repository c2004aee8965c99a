"""Redis stopped for 5 s under a write load, then restarted empty: every answer is a 201, a 200 or a 503
``unavailable`` with Retry-After (a socket handshake too); service resumes within 5 s of Redis's return without a
restart, every process leases an id node again, and the outage is logged in a few lines per process; a socket that
reconnects with a ``since`` whose stream Redis lost gets ``resync_required`` first, and a new socket receives live
events."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import websockets
from websockets.exceptions import InvalidStatus

from actors.runtime.cluster import RayHead
from tests.api.realtime_helpers import emit
from tests.faults.conftest import ShardLogs, Stack, outage_stack
from tests.faults.load import WriteLoad, log_entries, make_writers
from tests.support import Api, Mailbox, WsClient, assert_error, wait_until

OUTAGE_S = 5.0
RESUME_S = 5.0
WRITERS = 4


@pytest.fixture(scope="module")
def stack(ray_head: RayHead, mailbox: Mailbox, workdir: Path, run_id: str) -> Iterator[Stack]:
    with outage_stack("redisout", ray_head, mailbox, workdir, run_id) as made:
        yield made


async def leases(stack: Stack) -> int:
    """How many id node leases the stack's processes hold in Redis (one per api worker and per shard)."""
    client = aioredis.Redis.from_url(stack.redis.url)
    try:
        pattern = stack.server.env["REDIS_PREFIX"] + "idgen:lease:*"
        return len([key async for key in client.scan_iter(match=pattern)])
    finally:
        await client.aclose()


async def refused_handshake(base_url: str, token: str) -> InvalidStatus:
    url = base_url.replace("http://", "ws://") + "/api/v1/ws"
    try:
        conn = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=15)
    except InvalidStatus as exc:
        return exc
    await conn.close()
    raise AssertionError("a socket was accepted while Redis was down")


async def test_redis_stopped_for_5_s_then_restarted_empty_answers_only_201_200_503_and_sockets_resync(
    stack: Stack, ray_head: RayHead, register: Any
) -> None:
    async with contextlib.AsyncExitStack() as closing:
        clients = await make_writers(stack.base_url, register, WRITERS)
        for api, _ in clients:
            closing.push_async_callback(api.close)
        reader = Api(stack.base_url)
        closing.push_async_callback(reader.close)
        await outage_under_load(stack, ray_head, register, clients, reader, closing)


async def outage_under_load(
    stack: Stack,
    ray_head: RayHead,
    register: Any,
    clients: list[tuple[Api, list[str]]],
    reader: Api,
    closing: contextlib.AsyncExitStack,
) -> None:
    user = await register(reader)
    uid = str(user["user"]["id"])
    assert reader.token
    old = await WsClient.connect(stack.base_url, reader.token)
    closing.push_async_callback(old.close)
    await old.gateway()
    since = (await emit(reader, uid))[0]
    assert (await old.next_of("test.event"))["id"] == since
    shard_logs = await ShardLogs.of(ray_head, reader)
    leased = await leases(stack)  # every api worker and every shard started so far
    assert leased >= int(stack.server.env["WORKERS"])

    load = WriteLoad(clients)
    running = asyncio.create_task(load.run())
    try:
        await wait_until(lambda: load.acked_at_least(2 * WRITERS), timeout=20)
        log_from = len(stack.log_lines())
        shard_logs.mark()
        stopped_at = time.monotonic()
        await asyncio.to_thread(stack.redis.stop)
        await wait_until(lambda: load.failed_since(stopped_at), timeout=10)
        refused = await refused_handshake(stack.base_url, reader.token)
        await asyncio.sleep(max(0.0, stopped_at + OUTAGE_S - time.monotonic()))  # the outage lasts 5 s
        await asyncio.to_thread(stack.redis.start)  # empty: no persistence
        back_at = time.monotonic()
        acked_at_return = len(load.acked)

        async def all_leased() -> bool:
            return await leases(stack) == leased

        await wait_until(all_leased, timeout=RESUME_S)  # the restart lost every lease: each process took one again
        leased_s = time.monotonic() - back_at
        await wait_until(lambda: load.acked_at_least(acked_at_return + 4 * WRITERS), timeout=30)
        load.stop.set()
        await asyncio.wait_for(running, timeout=40)
    finally:
        load.stop.set()
        if not running.done():
            running.cancel()

    load.check_outage("Redis", stopped_at, back_at, RESUME_S)
    print(f"every id node leased again {leased_s:.2f} s after Redis's return")
    assert_error(_reply_of(refused), 503, "unavailable")
    assert refused.response.headers["retry-after"].isdigit()
    await load.check_stored(stack.database_url)

    # The socket open through the outage hears that its stream is gone; so does one reconnecting with its since.
    assert (await old.next_of("resync_required", timeout=RESUME_S))["data"]["oldest_id"] is None
    again = await WsClient.connect(stack.base_url, reader.token, since=since)
    closing.push_async_callback(again.close)
    first = await again.next()
    assert first["type"] == "resync_required", first
    fresh = await WsClient.connect(stack.base_url, reader.token)
    closing.push_async_callback(fresh.close)
    await fresh.gateway()
    live = (await emit(reader, uid))[0]
    for ws in (fresh, again, old):
        assert (await ws.next_of("test.event"))["id"] == live

    # The api processes: per process one warning for the outage and one error for the lost id node lease.
    entries = log_entries(stack.log_lines(log_from))
    loud = [e for e in entries if e["level"] in ("warning", "error", "critical", "raw")]
    print("api log:", *[f"{e['level']} {e.get('logger')}: {e['msg']}" for e in loud], sep="\n  ")
    assert not [e for e in loud if "exc" in e or e["level"] == "raw"], loud
    outage_lines = [e for e in loud if e["level"] == "warning" and e["msg"].startswith("redis unavailable: ")]
    lease_lines = [e for e in loud if e["level"] == "error" and e["msg"].startswith("id node lease lost")]
    assert len(loud) == len(outage_lines) + len(lease_lines), loud
    assert len(outage_lines) <= int(stack.server.env["WORKERS"]), outage_lines
    assert any(e["msg"] == "redis available again" for e in entries)
    # The shard processes: no traceback, a few lines each.
    for file, lines in shard_logs.lines().items():
        warnings = [line for line in lines if line.startswith(("WARNING", "ERROR", "CRITICAL"))]
        assert not any("Traceback" in line for line in lines), (file.name, lines)
        assert len(warnings) <= 3, (file.name, warnings)


def _reply_of(refused: InvalidStatus) -> Any:
    """A refused handshake's HTTP answer as the support helpers' Reply (status, JSON body, headers)."""
    import httpx
    import orjson

    from tests.support import Reply

    response = refused.response
    return Reply(response.status_code, orjson.loads(response.body), httpx.Headers(list(response.headers.raw_items())))
