"""Two uvicorn worker processes share one Ray cluster and talk to the same named shard actor."""

from __future__ import annotations

import httpx

from tests.conftest import Server


async def test_both_worker_processes_reach_the_same_user_shard(server: Server) -> None:
    seen: list[tuple[int, int, int]] = []  # (api pid, shard pid, shard call counter)
    api_pids: set[int] = set()
    for _ in range(200):
        # A new connection per request, so the kernel spreads them over both workers.
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            reply = await client.get("/api/v1/_test/shard_ping")  # test-only: /readyz shows no internals
        assert reply.status_code == 200, reply.text
        body = reply.json()
        shard = body["shard"]
        assert shard["index"] == 0
        seen.append((body["pid"], shard["pid"], shard["calls"]))
        api_pids.add(body["pid"])
        if len(api_pids) >= 2 and len(seen) >= 10:
            break
    assert len(api_pids) == 2, f"only one worker answered: {api_pids}"
    assert len({shard_pid for _, shard_pid, _ in seen}) == 1, "workers reached different shard processes"
    counters = [calls for _, _, calls in seen]
    # One counter, advanced by both processes in request order: the actor's state is shared, not per process.
    assert counters == sorted(counters)
    assert len(set(counters)) == len(counters)
