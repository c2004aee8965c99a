"""PostgreSQL stopped for 5 s under a write load: every answer is a 201, a 200 or a 503 ``unavailable`` with
Retry-After; service resumes within 5 s of PostgreSQL's return without a restart; every acknowledged post exists
exactly once; the outage is logged in a few lines (one warning per process), not a traceback per request or per
attempt. And an unexpected error is still a 500 ``internal`` with its request id, logged with its stack."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from actors.runtime.cluster import RayHead
from tests.faults.conftest import ShardLogs, Stack, outage_stack
from tests.faults.load import WriteLoad, log_entries, make_writers
from tests.support import Api, Mailbox, assert_error, wait_until

OUTAGE_S = 5.0
RESUME_S = 5.0
WRITERS = 4


@pytest.fixture(scope="module")
def stack(ray_head: RayHead, mailbox: Mailbox, workdir: Path, run_id: str) -> Iterator[Stack]:
    with outage_stack("pgout", ray_head, mailbox, workdir, run_id) as made:
        yield made


async def test_postgres_stopped_for_5_s_under_writes_answers_only_201_200_503_and_resumes_by_itself(
    stack: Stack, ray_head: RayHead, register: Any
) -> None:
    clients = await make_writers(stack.base_url, register, WRITERS)
    try:
        await outage_under_load(stack, ray_head, clients)
    finally:
        for api, _ in clients:
            await api.close()


async def outage_under_load(stack: Stack, ray_head: RayHead, clients: list[tuple[Api, list[str]]]) -> None:
    shard_logs = await ShardLogs.of(ray_head, clients[0][0])
    load = WriteLoad(clients)
    running = asyncio.create_task(load.run())
    try:
        await wait_until(lambda: load.acked_at_least(2 * WRITERS), timeout=20)
        log_from = len(stack.log_lines())
        shard_logs.mark()
        stopped_at = time.monotonic()
        await asyncio.to_thread(stack.pg.stop, "fast")
        await wait_until(lambda: load.failed_since(stopped_at), timeout=10)
        await asyncio.sleep(max(0.0, stopped_at + OUTAGE_S - time.monotonic()))  # the outage lasts 5 s
        await asyncio.to_thread(stack.pg.start)
        back_at = time.monotonic()
        acked_at_return = len(load.acked)
        await wait_until(lambda: load.acked_at_least(acked_at_return + 4 * WRITERS), timeout=30)
        load.stop.set()
        await asyncio.wait_for(running, timeout=40)
    finally:
        load.stop.set()
        if not running.done():
            running.cancel()

    load.check_outage("PostgreSQL", stopped_at, back_at, RESUME_S)
    await load.check_stored(stack.database_url)

    # The api processes: one warning per outage each (its first failure), then one info line when it is over.
    entries = log_entries(stack.log_lines(log_from))
    loud = [e for e in entries if e["level"] in ("warning", "error", "critical", "raw")]
    print("api log:", *[f"{e['level']} {e.get('logger')}: {e['msg']}" for e in loud], sep="\n  ")
    assert all(e["level"] == "warning" and " unavailable: " in e["msg"] and "exc" not in e for e in loud), loud
    assert 1 <= len(loud) <= 2 * int(stack.server.env["WORKERS"]), loud
    assert any(e["msg"] == "postgresql available again" for e in entries)
    # The shard processes: no traceback per op or per job, at most a warning or two each.
    for file, lines in shard_logs.lines().items():
        warnings = [line for line in lines if line.startswith(("WARNING", "ERROR", "CRITICAL"))]
        assert not any("Traceback" in line for line in lines), (file.name, lines)
        assert len(warnings) <= 2, (file.name, warnings)


async def test_an_unexpected_error_in_a_route_is_still_a_500_with_its_request_id_and_its_stack_in_the_log(
    stack: Stack, register: Any
) -> None:
    """A database that answers but lacks a table is a bug, not an outage: no blanket catch turns it into a 503."""
    api = Api(stack.base_url)
    conn = await asyncpg.connect(stack.database_url)
    try:
        assert_error(await api.get("/api/v1/hashtags/neverused"), 404, "not_found")  # the route works
        log_from = len(stack.log_lines())
        await conn.execute("ALTER TABLE hashtags RENAME TO hashtags_away")
        try:
            reply = await api.get("/api/v1/hashtags/neverusedeither")
        finally:
            await conn.execute("ALTER TABLE hashtags_away RENAME TO hashtags")
        err = assert_error(reply, 500, "internal")
        assert err["details"] == {"request_id": reply.headers["x-request-id"]}
        assert "hashtags" not in str(reply.body) and "retry-after" not in reply.headers

        async def logged() -> list[dict[str, Any]]:
            entries = log_entries(stack.log_lines(log_from))
            return [e for e in entries if e.get("request_id") == reply.headers["x-request-id"] and "exc" in e]

        [line] = await wait_until(logged, timeout=5)
        assert line["level"] == "error" and "UndefinedTableError" in line["exc"]
        assert_error(await api.get("/api/v1/hashtags/neverused"), 404, "not_found")
    finally:
        await conn.close()
        await api.close()
