"""Delivery latency: from ``deliver()`` in this process to a socket on a gateway process, paced at 1,000 events/s.

Starts ``python -m api`` with WORKERS=2 (two gateway processes), signs up user U, and connects one subscriber
socket for U from a separate client process (so that receive times are not delayed by the emitters); its ``ping``
ack names its gateway, and its connect makes U's UserShard mirror that gateway into U's route in Redis
(``route:{U}``, storage/routes.py). This process builds the real ``Delivery(services)`` (``Services.create``, as
the api workers and the shards do: no Ray, no UserShard in the path) and emits events ``{"t": time.time_ns(),
...}`` to U, one event per call, open loop: each event starts at its scheduled time whatever the previous ones are
doing (up to ``--inflight`` at once). The subscriber takes latency = receive time - t (same clock). Three paths:

* ``deliver``: ``Delivery.deliver``: the outbox row committed in PostgreSQL (group commit), then ``publish``: ONE
  Redis script (``Routes.deliver``, micro-batched across concurrent emitters) appends the event to
  ``events:U`` and PUBLISHes it to the gateways on U's route; then the outbox row is marked sent.
* ``publish``: the same without PostgreSQL (``publish(mark=False)``): the script alone.
* ``raw``: a hand-written script per event doing XREVRANGE (the previous id) + XADD to ``events:U`` + PUBLISH to
  U's gateway channel, of the same message ``Routes.deliver`` publishes (``[[user, id, type, data, previous
  id]]``, byte for byte): the lower bound without PostgreSQL, the batching, the dedupe record, the stream's
  EXPIRE and the route lookup.

The time of every stage is recorded: the outbox commit (``deliver``), the wait for a script slot (batching), the
delivery script call, from the script call to the socket (receive), and the mark after it (``deliver``).

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgpack
import psutil
import uvloop

from actors.runtime.delivery import Delivery, OutboxEvent
from actors.runtime.services import Services
from benchmarks import _harness as h
from storage.routes import DeliverFailed, DeliverItem, Routes
from storage.streams import STREAM_MAXLEN, Appended, parse_stream_id

TYPE = "test.event"
PATH_CODES = {"deliver": 1, "publish": 2, "raw": 3}
TARGET_P99_MS = 20.0
SMOKE = {"rates": "100", "seconds": 0.5, "inflight": 16, "pool": 4}

# XADD and PUBLISH in one atomic step (so concurrent emitters never publish out of stream order), with the message
# storage/routes.py publishes, byte for byte: [[user id, event id, type, data (bin), previous id]], the ids as str 8
# (0xd9) as its Lua ``str`` packs them. ARGV[4]: the array heads and the packed user id; ARGV[5]: the type (str 8)
# and the data (bin) packed here.
RAW_SCRIPT = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev = '0-0'
if #last > 0 then
  prev = last[1][1]
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 't', ARGV[2], 'd', ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[4] .. string.char(0xd9, #id) .. id .. ARGV[5] .. string.char(0xd9, #prev) .. prev)
return {id, prev}
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
        self.published: list[tuple[int, str]] = []  # (n, stream id) in the order the scripts returned them

    def mark(self, n: int, stage: str) -> None:
        self.t[n][stage] = time.time_ns()


def _n_of(packed: bytes) -> int:
    return int(msgpack.unpackb(packed, raw=False)["n"])


def instrument(delivery: Delivery, stages: Stages) -> None:
    """Time ``publish`` (its start: the end of the outbox commit for ``deliver``) and the delivery script
    (``Routes.deliver``, one call per batch) without changing what they do."""
    publish = delivery.publish
    deliver = delivery.routes.deliver

    async def timed_publish(
        events: Sequence[OutboxEvent], *, mark: bool = True, mark_later: bool = False
    ) -> dict[int, dict[int, str]]:
        for event in events:
            stages.mark(_n_of(event.data), "publish_start")
        return await publish(events, mark=mark, mark_later=mark_later)

    async def timed_deliver(events: Sequence[DeliverItem]) -> list[dict[int, Appended] | DeliverFailed]:
        ns = [_n_of(item[3]) for item in events]
        for n in ns:
            stages.mark(n, "script_start")
        result = await deliver(events)
        for n, landed in zip(ns, result, strict=True):
            stages.mark(n, "script_end")
            if not isinstance(landed, DeliverFailed):
                stages.published.extend((n, at.id) for at in landed.values())
        return result

    delivery.publish = timed_publish  # type: ignore[method-assign]
    delivery.routes.deliver = timed_deliver  # type: ignore[method-assign]


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
    # A missing event whose stream id is below one published before it was dropped by the gateway as "already sent".
    reordered = 0
    highest = (0, 0)
    missing_set = set(missing)
    missing_ids = [stream_id for n, stream_id in stages.published if n in missing_set]
    for n, stream_id in stages.published:
        position = parse_stream_id(stream_id)
        if position < highest and n in missing_set:
            reordered += 1
        highest = max(highest, position)
    spans: dict[str, list[float]] = defaultdict(list)
    for n, r in received.items():
        s = stages.t.get(n, {})
        if not {"t0", "script_start", "script_end"} <= s.keys():
            continue
        if path == "deliver" and "publish_start" in s:
            spans["outbox commit"].append((s["publish_start"] - s["t0"]) / 1e6)
            spans["wait for a script (batching)"].append((s["script_start"] - s["publish_start"]) / 1e6)
        elif path == "publish":
            spans["wait for a script (batching)"].append((s["script_start"] - s["t0"]) / 1e6)
        script = "script call (XADD+PUBLISH)" if path == "raw" else "deliver script (Routes.deliver)"
        spans[script].append((s["script_end"] - s["script_start"]) / 1e6)
        spans["script call -> socket"].append((r[3] - s["script_start"]) / 1e6)
        if path == "deliver" and "done" in s:
            spans["mark_sent (after the script)"].append((s["done"] - s["script_end"]) / 1e6)
    breakdown = {name: _ms(values) for name, values in spans.items()}
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


def cpu_groups(server: h.Server, head: Any, sub: Subscriber) -> h.ProcessGroups:
    """Processes whose CPU time is accounted per phase: "ray workers" are the server's shard processes (pids from
    their ping), "ray system" every other process under the Ray head; postgres the processes working for the
    bench's database (``h.postgres_processes``, listed anew at each reading: its backends and the shared ones);
    redis-server every process by that name (shared with other work on the machine: an upper bound)."""
    pids = h.shard_pids(server.base_url)
    shard_pids = {pid for group in pids.values() for pid in group}
    database = server.env["DATABASE_URL"].rsplit("/", 1)[1]
    return h.ProcessGroups(
        {
            "emitter": [psutil.Process()],
            "subscriber": [psutil.Process(sub.process.pid)],
            "api workers": [psutil.Process(pid) for pid in server.worker_pids],
            "ray workers": [psutil.Process(pid) for pid in sorted(shard_pids)],
            "ray system": [p for p in h.ray_processes(head) if p.pid not in shard_pids],
            "postgres": lambda: h.postgres_processes(database),
            "redis": h.processes_named("redis-server"),
        }
    )


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

    services = await Services.create(settings, pool_max=args.pool)
    try:
        current: dict[str, Delivery] = {}
        timed: dict[str, Stages] = {}

        def fresh_delivery(stages: Stages) -> None:
            """A Delivery as the api workers and the shards build one, its seams timed into ``stages``."""
            delivery = Delivery(services)
            instrument(delivery, stages)
            current["delivery"] = delivery
            timed["stages"] = stages

        stream_key = services.keys.events(user.id)  # as storage.streams.Streams.stream_key
        channel = services.keys.gateway_channel(sub.gateway)
        raw_script = services.redis.register_script(RAW_SCRIPT)
        raw_head = b"\x91\x95" + msgpack.packb(user.id)
        raw_type = b"\xd9" + bytes([len(TYPE)]) + TYPE.encode()  # str 8, as storage/routes.py packs it
        routed = await Routes(services.redis, services.keys).gateways(user.id)
        h.say(f"# user {user.id}'s route (mirrored by the UserShard on connect): {sorted(routed)}")
        if routed != {sub.gateway}:
            raise RuntimeError(f"route of user {user.id} is {sorted(routed)}, not the subscriber's {sub.gateway}")

        async def via_deliver(data: dict[str, Any]) -> None:
            await current["delivery"].deliver([OutboxEvent.make([user.id], TYPE, data)])

        async def via_publish(data: dict[str, Any]) -> None:
            await current["delivery"].publish([OutboxEvent.make([user.id], TYPE, data)], mark=False)

        async def via_raw(data: dict[str, Any]) -> None:
            packed = msgpack.packb(data, use_bin_type=True)
            tail = raw_type + msgpack.packb(packed, use_bin_type=True)
            n = int(data["n"])
            stages = timed["stages"]
            stages.mark(n, "script_start")
            event_id, _prev = await raw_script(
                keys=[stream_key, channel], args=[STREAM_MAXLEN, TYPE, packed, raw_head, tail]
            )
            stages.mark(n, "script_end")
            stages.published.append((n, event_id.decode() if isinstance(event_id, bytes) else str(event_id)))

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
                meter = h.CpuMeter(cpu_groups(server, head, sub))
                emitted = await emit_phase(path, count, rate, args.inflight, emitters[path], stages)
                wall, spent = meter.spent()
                cores = {name: seconds / wall for name, seconds in spent.items()}
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
        server = bench.server(dsn, prefix, head, {"WORKERS": "2"})  # its UserShards keep U's route
        settings = bench.settings(dsn, prefix, head)
        results = uvloop.run(run(bench, server, head, settings, args))

    h.say()
    h.say(f"# {h.command_line()}")
    rows = []
    for r in results:
        rows.append(
            [
                r["path"],
                {"deliver": "commit + mark", "publish": "no", "raw": "no"}[r["path"]],
                f"{r['count']:,} @ {r['rate']:.0f}/s",
                r["achieved_rate"],
                r["p50"],
                r["p90"],
                r["p99"],
                r["max"],
                f"{r['lost']} ({r['lost_but_stored']} stored, {r['lost_reordered']} published out of order)",
                r["lag_p99_ms"],
            ]
        )
    h.say(
        h.table(
            [
                "path",
                "PostgreSQL",
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
