"""Shards on two nodes against one, in one run; and the time for a killed node's shards to serve again.

A two-node Ray cluster on this machine (tests/cluster/two_node_cluster.py: a head and a second node, 1 CPU
each, both on 127.0.0.1), a throwaway database and Redis prefix, and the real UserShards
(``get_or_create_user_shards``, K shards, placed shard k on the k-th node). Phase 1, with the shards on both
nodes, measures shard-call throughput and latency of the ``touch`` op (as benchmarks/batching.py, batched
ShardClient), then ``deliver()`` latency (outbox commit, then one Redis script that appends to the recipient's
stream and publishes to the gateways on the recipient's route, storage/routes.py) to the gateway channel. The
routes are what the shards contribute: each recipient's UserShard mirrors the gateway that registers its sockets
into Redis (``route:{user}``); the delivery itself makes no Ray call, wherever the shards run. Then node 2's
raylet and workers are SIGKILLed and the time until every shard that ran there answers again (restarted on the
head) is measured. Phase 2 repeats both measurements with every shard on the head (the gateway registers again,
so the restarted shards mirror the routes again). Both nodes share this machine's cores, so the ratio shows the
cost or gain of the placement itself, not of more hardware. The GCS health check runs at 0.5 s x 3 here (Ray's
defaults take about 15 s to declare a node dead).

    .venv/bin/python benchmarks/two_nodes.py [--callers 50,500] [--seconds 5] [--users 100000] [--shards 4] [--rate 500]
        [--smoke]
"""

from __future__ import annotations

import os
import sys

# benchmarks/actors.py would shadow the `actors` package: import from the repository root instead.
sys.path.remove(os.path.dirname(os.path.realpath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import asyncio
import json
import signal
import subprocess
import time
from collections import Counter
from typing import Any

import msgpack
import psutil
import uvloop

from actors.runtime.client import ShardClient
from actors.runtime.cluster import RayHead, loopback_env
from actors.runtime.delivery import Delivery, OutboxEvent
from actors.runtime.services import Services
from actors.runtime.shards import get_or_create_user_shards
from benchmarks import _harness as h
from benchmarks.batching import cell as batching_cell
from storage.config import Settings

SMOKE = {"callers": "8", "seconds": 0.5, "users": 1000, "shards": 2, "rate": 50.0}
HEALTH_CHECK_ENV = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}


def start_cluster(bench: h.Bench) -> tuple[RayHead, dict[str, Any]]:
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", **loopback_env(), **HEALTH_CHECK_ENV)
    env.pop("RAY_ADDRESS", None)
    log_path = bench.workdir / "two-node-cluster.log"
    with open(log_path, "ab") as log:
        helper = subprocess.Popen(
            [sys.executable, "-m", "tests.cluster.two_node_cluster"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
    assert helper.stdin is not None and helper.stdout is not None
    stdin, stdout = helper.stdin, helper.stdout

    def stop() -> None:
        stdin.close()
        try:
            helper.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(helper.pid, signal.SIGKILL)
            helper.wait(timeout=10)
        stdout.close()

    bench.defer("two-node cluster", stop)
    line = stdout.readline()
    if not line:
        raise RuntimeError(f"the two-node cluster did not start; see {log_path}")
    info = json.loads(line)
    return RayHead(helper, info["address"], log_path, {}), info  # type: ignore[arg-type]


async def cell(handles: list[Any], callers: int, seconds: float, users: int) -> dict[str, Any]:
    """Batched ShardClient ``touch`` calls from ``callers`` concurrent callers (benchmarks/batching.py's cell)."""
    return await batching_cell(handles, {}, callers, seconds, users)


async def measure(handles: list[Any], callers: list[int], seconds: float, users: int) -> dict[int, dict[str, Any]]:
    await asyncio.gather(*(handle.ping.remote() for handle in handles))
    return {c: await cell(handles, c, seconds, users) for c in callers}


DELIVERY_USERS = 64
GATEWAY = "bench-gateway"


async def delivery_cell(handles: list[Any], services: Services, rate: float, seconds: float) -> dict[str, Any]:
    """``deliver()`` as a writer does (outbox commit, then one Redis script: stream append and PUBLISH to the
    gateways on the recipient's route), measured to the gateway channel (a Redis subscriber standing in for a
    gateway): ``rate`` events per second to users spread over every shard, each registered on one fake gateway
    through its UserShard, which mirrors the route into Redis before ``register`` returns."""
    uids = [
        int(r["id"]) for r in await services.pool.fetch("SELECT id FROM users ORDER BY id LIMIT $1", DELIVERY_USERS)
    ]
    by_shard: dict[int, dict[int, list[str]]] = {}
    client = ShardClient(handles)
    for uid in uids:
        by_shard.setdefault(client.shard_for(uid), {})[uid] = [f"s{uid}"]
    await asyncio.gather(*(handles[k].register.remote(GATEWAY, socks, time.time_ns()) for k, socks in by_shard.items()))
    delivery = Delivery(services)
    routes = await asyncio.gather(*(delivery.routes.gateways(uid) for uid in uids))
    routed = sum(1 for gateways in routes if GATEWAY in gateways)
    h.say(f"# routes mirrored by the UserShards: {routed} of {len(uids)} users on {GATEWAY}")
    pubsub = services.redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(services.keys.gateway_channel(GATEWAY))
    latencies: list[int] = []
    sent = 0

    async def listen() -> None:
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            batch = msgpack.unpackb(message["data"], raw=False)
            now = time.perf_counter_ns()
            if isinstance(batch, list):
                latencies.extend(now - msgpack.unpackb(item[3], raw=False)["t"] for item in batch)

    listener = asyncio.create_task(listen())
    emits: set[asyncio.Task[Any]] = set()
    interval = 1.0 / rate
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        uid = uids[sent % len(uids)]
        event = OutboxEvent.make([uid], "bench.event", {"t": time.perf_counter_ns()})
        task = asyncio.create_task(delivery.deliver([event]))
        emits.add(task)
        task.add_done_callback(emits.discard)
        sent += 1
        await asyncio.sleep(max(0.0, started + sent * interval - time.perf_counter()))
    await asyncio.wait_for(asyncio.gather(*emits), timeout=60)
    deadline = time.monotonic() + 10
    while len(latencies) < sent and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    listener.cancel()
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    latencies.sort()
    return {
        "events": sent,
        "arrived": len(latencies),
        "p50_ms": h.percentile(latencies, 50) / 1e6 if latencies else 0.0,
        "p99_ms": h.percentile(latencies, 99) / 1e6 if latencies else 0.0,
    }


async def serving_again(handles: list[Any], indexes: list[int], head: str, timeout: float = 120.0) -> float:
    """Seconds until every shard in ``indexes`` answers a ping from the head node."""
    started = time.monotonic()
    pending = set(indexes)
    while pending:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"shards {sorted(pending)} not serving after {timeout} s")
        for k in list(pending):
            try:
                ping = await asyncio.wait_for(handles[k].ping.remote(), 1.0)
            except Exception:  # noqa: S112 (unavailable while the node is declared dead and the shard restarts)
                continue
            if ping["node"] == head:
                pending.discard(k)
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def run(
    handles: list[Any],
    info: dict[str, Any],
    callers: list[int],
    seconds: float,
    users: int,
    settings: Settings,
    rate: float,
) -> tuple[list[list[Any]], list[list[Any]]]:
    services = await Services.create(settings)
    await services.pool.execute(
        """INSERT INTO users (id, username, email, name, birthday, password_hash)
           SELECT n, 'bench' || n, 'bench' || n || '@example.com', 'Bench', DATE '2000-01-01', 'x'
           FROM generate_series(1, $1) AS n""",
        DELIVERY_USERS,
    )
    pings = await asyncio.gather(*(handle.ping.remote() for handle in handles))
    h.say(f"# shards per node before the kill: {dict(Counter(p['node'][:8] for p in pings))}")
    on_node2 = [p["index"] for p in pings if p["node"] == info["worker_node"]]
    assert on_node2, "no shard on node 2"
    two = await measure(handles, callers, seconds, users)
    two_delivery = await delivery_cell(handles, services, rate, seconds)

    raylet = psutil.Process(info["worker_raylet_pid"])
    victims = [raylet, *raylet.children(recursive=True)]
    killed = time.monotonic()
    for process in victims:
        process.send_signal(signal.SIGKILL)
    await serving_again(handles, on_node2, info["head_node"])
    recovery = time.monotonic() - killed
    h.say(f"# node 2 SIGKILLed ({len(victims)} processes): its {len(on_node2)} shards served again in {recovery:.2f} s")
    one = await measure(handles, callers, seconds, users)
    one_delivery = await delivery_cell(handles, services, rate, seconds)
    await services.close()

    rows: list[list[Any]] = []
    for c in callers:
        for label, result in (("two nodes", two[c]), ("one node", one[c])):
            rows.append([c, label, result["ops_per_s"], result["p50_ms"], result["p99_ms"], result["ops_per_batch"]])
        ratio = two[c]["ops_per_s"] / one[c]["ops_per_s"] if one[c]["ops_per_s"] else 0.0
        rows.append([c, "ratio two / one", ratio, "", "", ""])
    rows.append(["", "kill -> serving again (s)", recovery, "", "", ""])
    delivery_rows: list[list[Any]] = []
    for label, result in (("two nodes", two_delivery), ("one node", one_delivery)):
        delivery_rows.append([label, f"{result['arrived']} of {result['events']}", result["p50_ms"], result["p99_ms"]])
    p99_one = one_delivery["p99_ms"]
    delivery_rows.append(["ratio two / one (p99)", "", "", two_delivery["p99_ms"] / p99_one if p99_one else 0.0])
    return rows, delivery_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callers", default="50,500", help="concurrent callers per cell (comma list)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per cell")
    parser.add_argument("--users", type=int, default=100_000, help="user ids are drawn from 1..USERS")
    parser.add_argument("--shards", type=int, default=4, help="USER_SHARDS")
    parser.add_argument("--rate", type=float, default=500.0, help="events per second in the delivery cells")
    args = h.parse_args(parser, SMOKE)
    callers = [int(c) for c in args.callers.split(",") if c]

    with h.Bench("two_nodes", smoke=args.smoke) as bench:
        dsn = bench.database()
        prefix = bench.redis_prefix()
        head, info = start_cluster(bench)
        bench.ray_driver(head)
        settings = bench.settings(dsn, prefix, head, user_shards=args.shards)
        handles = get_or_create_user_shards(settings)
        rows, delivery_rows = uvloop.run(run(handles, info, callers, args.seconds, args.users, settings, args.rate))

    h.say()
    h.say(f"# {h.command_line()}")
    h.say(h.table(["C", "shards on", "ops/s", "p50 ms", "p99 ms", "ops/call"], rows))
    h.say()
    h.say(f"deliver() to the gateway channel at {args.rate:.0f} events/s:")
    h.say(h.table(["shards on", "arrived", "p50 ms", "p99 ms"], delivery_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
