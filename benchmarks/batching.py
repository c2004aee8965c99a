"""Micro-batching of shard calls: ops/s and latency of UserShard calls from one driver, batched vs one call per op.

The real UserShards (``get_or_create_user_shards``, K shards, on a private Ray head, with a throwaway database and
Redis prefix behind them) run the ``touch`` op (a trivial per-user op that touches no storage: the logical user is
activated in the shard's entity table and the op runs under its lock) for random user ids among 100,000, from C
concurrent callers in this one process, for a fixed time per cell. ``ShardClient(handles)`` coalesces calls per
shard (flush at 128 ops or 2 ms, at once when nothing is in flight); ``ShardClient(handles, max_batch=1)`` makes
one Ray call per op.

    .venv/bin/python benchmarks/batching.py [--callers 1,50,500] [--seconds 5] [--users 100000] [--shards 4] [--smoke]
"""

from __future__ import annotations

import os
import sys

# benchmarks/actors.py would shadow the `actors` package (here, and in Ray workers, to which Ray hands the
# script's directory): import from the repository root instead.
if os.path.dirname(os.path.realpath(__file__)) in sys.path:  # not when imported by another benchmark
    sys.path.remove(os.path.dirname(os.path.realpath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import asyncio
import random
import time
from typing import Any

import uvloop

from actors.runtime.client import ShardClient
from actors.runtime.shards import get_or_create_user_shards
from benchmarks import _harness as h
from domain.ops import Touch

SMOKE = {"callers": "1,8", "seconds": 0.5, "users": 1000, "shards": 2}
MODES = {
    "batched (adaptive)": {},
    "one call per op (max_batch=1)": {"max_batch": 1},
}


async def cell(handles: list[Any], mode: dict[str, Any], callers: int, seconds: float, users: int) -> dict[str, Any]:
    client = ShardClient(handles, **mode)
    rng = random.Random(callers)
    latencies: list[int] = []
    state = {"recording": False, "stop": False}

    async def caller() -> None:
        while not state["stop"]:
            user_id = rng.randint(1, users)
            started = time.perf_counter_ns()
            await client.call(Touch(user_id=user_id))
            if state["recording"]:
                latencies.append(time.perf_counter_ns() - started)

    tasks = [asyncio.create_task(caller()) for _ in range(callers)]
    await asyncio.sleep(min(1.0, seconds / 5))  # warm-up, not recorded
    batches0, ops0 = client.batches_sent, client.ops_sent
    state["recording"] = True
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    state["recording"] = False
    elapsed = time.perf_counter() - started
    batches, ops = client.batches_sent - batches0, client.ops_sent - ops0
    state["stop"] = True
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    latencies.sort()
    return {
        "done": len(latencies),
        "ops_per_s": len(latencies) / elapsed,
        "p50_ms": h.percentile(latencies, 50) / 1e6,
        "p99_ms": h.percentile(latencies, 99) / 1e6,
        "batches_per_op": batches / ops if ops else 0.0,
        "ops_per_batch": ops / batches if batches else 0.0,
    }


async def run(handles: list[Any], callers: list[int], seconds: float, users: int) -> list[list[Any]]:
    # Every shard answers and has built its services (database pool, Redis) before anything is timed.
    await asyncio.gather(*(handle.ping.remote() for handle in handles))
    warm = ShardClient(handles)
    await asyncio.gather(*(warm.call(Touch(user_id=uid)) for uid in range(1, 1001)))
    rows: list[list[Any]] = []
    for c in callers:
        results = {}
        for name, mode in MODES.items():
            h.say(f"# C={c} {name} ...")
            results[name] = await cell(handles, mode, c, seconds, users)
            r = results[name]
            rows.append(
                [
                    c,
                    name,
                    r["done"],
                    r["ops_per_s"],
                    r["p50_ms"],
                    r["p99_ms"],
                    r["batches_per_op"],
                    r["ops_per_batch"],
                ]
            )
        batched, single = (results[name]["ops_per_s"] for name in MODES)
        rows.append([c, "ratio batched / one per op", "", batched / single if single else 0.0, "", "", "", ""])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callers", default="1,50,500", help="concurrent callers per cell (comma list)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per cell")
    parser.add_argument("--users", type=int, default=100_000, help="user ids are drawn from 1..USERS")
    parser.add_argument("--shards", type=int, default=4, help="USER_SHARDS")
    args = h.parse_args(parser, SMOKE)
    callers = [int(c) for c in args.callers.split(",") if c]

    with h.Bench("batching", smoke=args.smoke) as bench:
        dsn = bench.database()
        prefix = bench.redis_prefix()
        head = bench.ray_head(num_cpus=2)
        bench.ray_driver(head)
        settings = bench.settings(dsn, prefix, head, user_shards=args.shards)
        handles = get_or_create_user_shards(settings)
        rows = uvloop.run(run(handles, callers, args.seconds, args.users))

    h.say()
    h.say(f"# {h.command_line()}")
    h.say(
        h.table(
            ["C", "client", "ops", "ops/s", "p50 ms", "p99 ms", "Ray calls/op", "ops/call"],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
