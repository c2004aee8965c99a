"""Delivery latency: from ``deliver()`` in this process to a socket on a gateway process, paced at 1,000 events/s.

Starts ``python -m api`` with WORKERS=2 (two gateway processes), signs up user U, and connects one subscriber
socket for U from a separate client process (so that receive times are not delayed by the emitters); its ``ping``
ack names its gateway. This process builds the real ``Delivery`` (``Services.create(settings)``, a push function
calling the UserShard handles' ``push.remote``, as api/app.py does) and emits events ``{"t": time.time_ns(), ...}``
to U, one event per call, open loop: each event starts at its scheduled time whatever the previous ones are doing
(up to ``--inflight`` at once). The subscriber takes latency = receive time - t (same clock). Three paths:

* ``deliver``: outbox row committed in PostgreSQL, then ``publish``: Lua XADD to ``events:U`` (streams.append),
  then one ``push`` call to U's UserShard (Ray), which PUBLISHes to U's gateway; then the outbox row is marked
  sent. Goes through the UserShard.
* ``publish``: the same without PostgreSQL (``publish(mark=False)``). Goes through the UserShard.
* ``raw``: one Lua script doing XADD to ``events:U`` and PUBLISH to the gateway's channel by hand, with the
  payload the gateway expects: the lower bound without PostgreSQL and without the shard hop. No UserShard.

For the two shard paths the time of every stage is recorded (commit, streams.append, push call, push to socket).

    .venv/bin/python benchmarks/delivery.py [--rates 1000] [--seconds 10] [--paths deliver,publish,raw] [--smoke]
"""

from __future__ import annotations

import os
import sys

# benchmarks/actors.py would shadow the `actors` package (here, and in Ray workers, to which Ray hands the
# script's directory): import from the repository root instead.
sys.path.remove(os.path.dirname(os.path.realpath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import asyncio
import json
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgpack
import psutil
import uvloop

from actors.runtime.delivery import Delivery, OutboxEvent
from actors.runtime.registry import shard_index
from actors.runtime.services import Services
from actors.runtime.shards import get_or_create_user_shards
from benchmarks import _harness as h
from storage.streams import STREAM_MAXLEN, parse_stream_id

TYPE = "test.event"
PATH_CODES = {"deliver": 1, "publish": 2, "raw": 3}
TARGET_P99_MS = 20.0
SMOKE = {"rates": "100", "seconds": 0.5, "inflight": 16, "pool": 4}

# XADD and PUBLISH in one atomic step (so concurrent emitters never publish out of stream order). The payload is
# what a UserShard publishes: msgpack [[user_id, event_id, type, data]], the event id spliced in as a fixstr.
RAW_SCRIPT = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 't', ARGV[2], 'd', ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[4] .. string.char(0xa0 + #id) .. id .. ARGV[5])
return id
"""


# ---------------------------------------------------------------- the subscriber (a separate process)


async def subscriber(url: str, token: str) -> None:
    """Connect, print the gateway id, then answer each ``report`` line on stdin with the events received since."""
    from websockets.asyncio.client import connect

    ws = await connect(
        url,
        additional_headers={"Authorization": f"Bearer {token}"},
        subprotocols=["i9.msgpack"],  # type: ignore[list-item]
        compression=None,
        max_size=2**22,
        open_timeout=30,
    )
    await ws.send(msgpack.packb({"ref": "gw", "action": "ping", "data": {}}))
    gateway = None
    while gateway is None:
        frame = msgpack.unpackb(await ws.recv(), raw=False)
        if frame["type"] == "ack" and frame["data"].get("ref") == "gw":
            gateway = frame["data"]["result"]["gateway"]
    records: list[list[Any]] = []

    async def read() -> None:
        while True:
            raw = await ws.recv()
            received = time.time_ns()
            frame = msgpack.unpackb(raw, raw=False)
            if frame["type"] == TYPE:
                data = frame["data"]
                records.append([data["p"], data["n"], data["t"], received, frame["id"]])

    reader_task = asyncio.create_task(read())
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print(json.dumps({"gateway": gateway}), flush=True)
    while line := (await stdin.readline()).decode().strip():
        if line == "report":
            batch, records[:] = list(records), []
            print(json.dumps({"records": batch, "alive": not reader_task.done()}), flush=True)
        elif line == "quit":
            break
    reader_task.cancel()
    await ws.close()


class Subscriber:
    def __init__(self, url: str, token: str) -> None:
        env = dict(os.environ, BENCH_WS_URL=url, BENCH_WS_TOKEN=token)
        self.process = subprocess.Popen(
            [h.PYTHON, str(Path(__file__).resolve()), "--subscriber"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=h.REPO,
        )
        self.gateway = str(self._read()["gateway"])

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("subscriber exited")
        return dict(json.loads(line))

    def report(self) -> list[list[Any]]:
        assert self.process.stdin is not None
        self.process.stdin.write(b"report\n")
        self.process.stdin.flush()
        reply = self._read()
        if not reply["alive"]:
            raise RuntimeError("subscriber socket closed")
        return list(reply["records"])

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            try:
                self.process.stdin.write(b"quit\n")
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(timeout=5)


# ---------------------------------------------------------------- the emitter


class Stages:
    """Per-event stage times (time.time_ns()), keyed by the event's ``n``; filled by wrappers around the seams."""

    def __init__(self) -> None:
        self.t: dict[int, dict[str, int]] = defaultdict(dict)
        self.push_order: list[tuple[int, str]] = []  # (n, stream id) in the order pushes were issued

    def mark(self, n: int, stage: str) -> None:
        self.t[n][stage] = time.time_ns()


def _n_of(packed: bytes) -> int:
    return int(msgpack.unpackb(packed, raw=False)["n"])


def instrument(delivery: Delivery, handles: list[Any], stages: Stages) -> None:
    """Time streams.append and the shard push without changing what they do."""
    append = delivery.streams.append

    async def timed_append(events: list[tuple[int, list[int], str, bytes]]) -> list[dict[int, str]]:
        ns = [_n_of(e[3]) for e in events]
        for n in ns:
            stages.mark(n, "append_start")
        result = await append(events)
        for n in ns:
            stages.mark(n, "append_end")
        return result

    delivery.streams.append = timed_append  # type: ignore[method-assign]

    async def push(k: int, items: list[Any]) -> Any:
        ns = [_n_of(item[3]) for item in items]
        for n, item in zip(ns, items, strict=True):
            stages.mark(n, "push_start")
            stages.push_order.append((n, item[1]))
        result = await handles[k].push.remote(items)
        for n in ns:
            stages.mark(n, "push_end")
        return result

    delivery._push = push


async def emit_phase(
    path: str,
    count: int,
    rate: float,
    inflight: int,
    emit_one: Any,
    stages: Stages,
) -> dict[str, Any]:
    """Open loop: event i starts at start + i/rate (or as soon as a slot is free when ``inflight`` are running)."""
    slots = asyncio.Semaphore(inflight)
    tasks: set[asyncio.Task[None]] = set()
    lags: list[float] = []
    errors = 0
    code = PATH_CODES[path]

    async def one(n: int) -> None:
        nonlocal errors
        try:
            data = {"t": time.time_ns(), "n": n, "p": code}
            stages.t[n]["t0"] = data["t"]
            await emit_one(data)
            stages.mark(n, "done")
        except Exception as exc:
            errors += 1
            if errors <= 5:
                h.say(f"#   emit failed: {exc!r}")
        finally:
            slots.release()

    start = time.perf_counter() + 0.05
    first = last = 0.0
    for n in range(count):
        target = start + n / rate
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        now = time.perf_counter()
        lags.append(now - target)
        if n == 0:
            first = now
        last = now
        task = asyncio.create_task(one(n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*list(tasks))
    lags.sort()
    return {
        "achieved_rate": (count - 1) / (last - first) if last > first else 0.0,
        "lag_p99_ms": h.percentile(lags, 99) * 1000,
        "errors": errors,
    }


def _ms(values: list[float]) -> tuple[float, float]:
    values.sort()
    return h.percentile(values, 50), h.percentile(values, 99)


def analyse(path: str, count: int, records: list[list[Any]], stages: Stages) -> dict[str, Any]:
    code = PATH_CODES[path]
    mine = [r for r in records if r[0] == code]
    received = {r[1]: r for r in mine}
    latencies = sorted((r[3] - r[2]) / 1e6 for r in received.values())
    missing = sorted(set(range(count)) - set(received))
    # A missing event whose stream id is below one pushed before it was dropped by the gateway as "already sent".
    reordered = 0
    highest = (0, 0)
    missing_set = set(missing)
    missing_ids = [stream_id for n, stream_id in stages.push_order if n in missing_set]
    for n, stream_id in stages.push_order:
        position = parse_stream_id(stream_id)
        if position < highest and n in missing_set:
            reordered += 1
        highest = max(highest, position)
    breakdown: dict[str, tuple[float, float]] = {}
    if path in ("deliver", "publish"):
        spans: dict[str, list[float]] = defaultdict(list)
        for n, r in received.items():
            s = stages.t.get(n, {})
            if not {"t0", "append_start", "append_end", "push_start", "push_end"} <= s.keys():
                continue
            if path == "deliver":
                spans["outbox commit"].append((s["append_start"] - s["t0"]) / 1e6)
            spans["streams.append"].append((s["append_end"] - s["append_start"]) / 1e6)
            spans["append -> push call"].append((s["push_start"] - s["append_end"]) / 1e6)
            spans["push call (Ray round trip)"].append((s["push_end"] - s["push_start"]) / 1e6)
            spans["push call -> socket"].append((r[3] - s["push_start"]) / 1e6)
            if "done" in s and path == "deliver":
                spans["mark_sent (after push)"].append((s["done"] - s["push_end"]) / 1e6)
        breakdown = {name: _ms(values) for name, values in spans.items()}
    elif path == "raw":
        spans_raw = [(r[3] - stages.t[n]["done"]) / 1e6 for n, r in received.items() if "done" in stages.t.get(n, {})]
        calls = [(s["done"] - s["t0"]) / 1e6 for s in stages.t.values() if "done" in s and "t0" in s]
        breakdown = {"script call (XADD+PUBLISH)": _ms(calls), "script return -> socket": _ms(spans_raw)}
    return {
        "received": len(received),
        "duplicates": len(mine) - len(received),
        "lost": len(missing),
        "lost_reordered": reordered,
        "missing_ids": missing_ids,
        "p50": h.percentile(latencies, 50),
        "p90": h.percentile(latencies, 90),
        "p99": h.percentile(latencies, 99),
        "max": latencies[-1] if latencies else float("nan"),
        "breakdown": breakdown,
    }


def cpu_groups(server: h.Server, head: Any, sub: Subscriber) -> dict[str, list[Any]]:
    """Processes whose CPU time is accounted per phase (postgres and redis-server: every process by that name)."""
    shards = [psutil.Process(pid) for pid in h.ray_worker_pids(head)]
    ray_all = [psutil.Process(head.process.pid), *psutil.Process(head.process.pid).children(recursive=True)]
    shard_pids = {p.pid for p in shards}
    return {
        "emitter": [psutil.Process()],
        "subscriber": [psutil.Process(sub.process.pid)],
        "api workers": [psutil.Process(pid) for pid in server.worker_pids],
        "ray workers": shards,
        "ray system": [p for p in ray_all if p.pid not in shard_pids],
        "postgres": h.processes_named("postgres"),
        "redis": h.processes_named("redis-server"),
    }


async def stored(services: Services, stream_key: str, event_ids: list[str]) -> int:
    """How many of these event ids are in the stream (stored, so a reconnect with ``since`` would replay them)."""
    if not event_ids:
        return 0
    async with services.redis.pipeline(transaction=False) as pipe:
        for event_id in event_ids:
            pipe.xrange(stream_key, min=event_id, max=event_id, count=1)
        found = await pipe.execute()
    return sum(1 for rows in found if rows)


async def run(
    bench: h.Bench, server: h.Server, head: Any, settings: Any, args: argparse.Namespace
) -> list[dict[str, Any]]:
    mail_dir = Path(server.env["VAR_DIR"]) / "mail"
    user = await h.signup(server.base_url, mail_dir, f"dlv{bench.run_id[:8]}")
    sub = Subscriber(h.ws_url(server.base_url), user.access_token)
    bench.defer("subscriber", sub.stop)
    h.say(f"# subscriber for user {user.id} is on gateway {sub.gateway}; api workers {server.worker_pids}")

    handles = get_or_create_user_shards(settings)
    services = await Services.create(settings, pool_max=args.pool)
    try:
        current: dict[str, Delivery] = {}

        def fresh_delivery(stages: Stages) -> None:
            """A Delivery as api/app.py builds one, its seams timed into ``stages``."""
            delivery = Delivery(services, lambda k, items: handles[k].push.remote(items), len(handles))
            instrument(delivery, handles, stages)
            current["delivery"] = delivery

        stream_key = services.keys.events(user.id)  # as storage.streams.Streams.stream_key
        channel = services.keys.gateway_channel(sub.gateway)
        raw_script = services.redis.register_script(RAW_SCRIPT)
        raw_head = b"\x91\x94" + msgpack.packb(user.id)
        raw_type = msgpack.packb(TYPE)
        h.say(f"# user {user.id} lives in UserShard {shard_index(user.id, len(handles))} of {len(handles)}")

        async def via_deliver(data: dict[str, Any]) -> None:
            await current["delivery"].deliver([OutboxEvent.make([user.id], TYPE, data)])

        async def via_publish(data: dict[str, Any]) -> None:
            await current["delivery"].publish([OutboxEvent.make([user.id], TYPE, data)], mark=False)

        async def via_raw(data: dict[str, Any]) -> None:
            packed = msgpack.packb(data, use_bin_type=True)
            tail = raw_type + msgpack.packb(packed, use_bin_type=True)
            await raw_script(keys=[stream_key, channel], args=[STREAM_MAXLEN, TYPE, packed, raw_head, tail])

        emitters = {"deliver": via_deliver, "publish": via_publish, "raw": via_raw}
        warm, pause = (20, 0.2) if args.smoke else (200, 1.0)  # warm-up events; seconds between the steps
        results = []
        for path in args.paths.split(","):
            for rate in (float(r) for r in args.rates.split(",")):
                stages = Stages()
                fresh_delivery(stages)
                await emit_phase(path, warm, 200.0, args.inflight, emitters[path], stages)  # warm-up
                await asyncio.sleep(pause)
                sub.report()
                stages = Stages()
                fresh_delivery(stages)
                count = int(rate * args.seconds)
                h.say(f"# {path}: {count} events at {rate:.0f}/s ...")
                groups = cpu_groups(server, head, sub)  # after the warm-up opened the pools' connections
                cpu_before = {name: h.cpu_seconds(procs) for name, procs in groups.items()}
                wall = time.perf_counter()
                emitted = await emit_phase(path, count, rate, args.inflight, emitters[path], stages)
                wall = time.perf_counter() - wall
                cores = {name: (h.cpu_seconds(procs) - cpu_before[name]) / wall for name, procs in groups.items()}
                await asyncio.sleep(2 * pause)
                records = sub.report()
                result = {"path": path, "rate": rate, "count": count, "cores": cores, **emitted}
                result.update(analyse(path, count, records, stages))
                result["lost_but_stored"] = await stored(services, stream_key, result.pop("missing_ids"))
                h.say(
                    f"#   achieved {result['achieved_rate']:.0f}/s, p50 {result['p50']:.1f} ms, p99 "
                    f"{result['p99']:.1f} ms, lost {result['lost']}"
                )
                results.append(result)
                await asyncio.sleep(pause)
        return results
    finally:
        await services.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="1000", help="events per second (comma list)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per path and rate")
    parser.add_argument("--paths", default="deliver,publish,raw", help="paths to measure (comma list)")
    parser.add_argument("--inflight", type=int, default=64, help="emits running at once, at most (< the Redis pool)")
    parser.add_argument("--pool", type=int, default=20, help="PostgreSQL pool size of this process")
    parser.add_argument("--subscriber", action="store_true", help=argparse.SUPPRESS)
    args = h.parse_args(parser, SMOKE)
    if args.subscriber:
        uvloop.run(subscriber(os.environ["BENCH_WS_URL"], os.environ["BENCH_WS_TOKEN"]))
        return 0

    with h.Bench("delivery", smoke=args.smoke) as bench:
        dsn = bench.database()
        prefix = bench.redis_prefix()
        head = bench.ray_head(num_cpus=2)
        server = bench.server(dsn, prefix, head, {"WORKERS": "2"})
        bench.ray_driver(head)
        settings = bench.settings(dsn, prefix, head)
        results = uvloop.run(run(bench, server, head, settings, args))

    h.say()
    h.say(f"# {h.command_line()}")
    rows = []
    for r in results:
        rows.append(
            [
                r["path"],
                "yes" if r["path"] != "raw" else "no",
                f"{r['count']:,} @ {r['rate']:.0f}/s",
                r["achieved_rate"],
                r["p50"],
                r["p90"],
                r["p99"],
                r["max"],
                f"{r['lost']} ({r['lost_but_stored']} stored, {r['lost_reordered']} pushed out of order)",
                r["lag_p99_ms"],
            ]
        )
    h.say(
        h.table(
            [
                "path",
                "via UserShard",
                "events",
                "achieved/s",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "lost",
                "emit lag p99 ms",
            ],
            rows,
        )
    )
    h.say()
    h.say("Where the time goes (p50 / p99 ms per stage):")
    stage_rows = []
    for r in results:
        for name, (p50, p99) in r["breakdown"].items():
            stage_rows.append([f"{r['path']} @ {r['rate']:.0f}/s", name, p50, p99])
    h.say(h.table(["path", "stage", "p50 ms", "p99 ms"], stage_rows))
    h.say()
    h.say("CPU used during each phase (cores; the machine has 2):")
    names = list(results[0]["cores"]) if results else []
    h.say(
        h.table(
            ["path", *names, "total"],
            [
                [f"{r['path']} @ {r['rate']:.0f}/s", *(r["cores"][n] for n in names), sum(r["cores"].values())]
                for r in results
            ],
        )
    )
    for r in results:
        verdict = "met" if r["p99"] < TARGET_P99_MS and r["lost"] == 0 else "MISSED"
        h.say(f"{r['path']} @ {r['rate']:.0f}/s: target p99 < {TARGET_P99_MS:.0f} ms and no loss: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
