"""Idle WebSockets per gateway process: how many authenticated sockets one uvicorn worker holds, at what memory.

Starts ``python -m api`` with WORKERS=1 (one process: the gateway), signs up a few users through the real flow
(the code is read from the .eml the server writes under VAR_DIR/mail), then opens N sockets (websockets lib,
asyncio, JSON subprotocol; the users' access tokens, one user having many devices) and measures the worker's
RSS/PSS/USS (/proc/<pid>/smaps_rollup) at checkpoints. Bytes per socket is the growth from a baseline taken after
the first ``--warm`` sockets (so lazily loaded code is not counted) divided by the sockets opened since. Then a
sample of sockets must answer a ``ping`` action, at once and again after ``--hold`` seconds (longer than the
server's 25 s protocol ping interval, so every socket has been pinged by then).

The server is configured to lift exactly the limits a load test of idle sockets runs into, and says so: every
handshake comes from 127.0.0.1, so the per-IP handshake bucket (RATE_LIMITS ``ws_connect``, 120 a minute by
default) is raised to the number of sockets, and each user holds sockets / users of them, so the per-user cap
(WS_MAX_SOCKETS_PER_USER, 20 by default) is raised to that. Every other limit keeps its default; handshakes in
flight (``--concurrency``) stay below the gateway's 256 (api/ws/admission.py). A run in which a socket did not
open or a ping went unanswered exits with status 1, after its table.

    .venv/bin/python benchmarks/ws_idle.py [--sockets 10000] [--users 4] [--concurrency 50] [--hold 30] [--smoke]
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
import math
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvloop
from websockets.asyncio.client import ClientConnection, connect

from benchmarks import _harness as h
from storage.config import DEFAULT_RATE_LIMITS, Settings, parse_rate_limits

TARGET_BYTES = 50 * 1024
SMOKE = {"sockets": 150, "users": 2, "warm": 20, "concurrency": 20, "settle": 0.2, "hold": 1.0, "sample": 10}


def lifted_limits(sockets: int, users: int) -> tuple[dict[str, str], str]:
    """The server environment that lifts the two limits ``sockets`` idle sockets of ``users`` users from one IP
    run into (never below their defaults), and a sentence saying so."""
    count, window = parse_rate_limits(DEFAULT_RATE_LIMITS)["ws_connect"]
    per_ip = max(count, sockets)
    per_user = max(Settings.ws_max_sockets_per_user, math.ceil(sockets / users))
    env = {"RATE_LIMITS": f"ws_connect={per_ip}/{window}", "WS_MAX_SOCKETS_PER_USER": str(per_user)}
    said = (
        f"limits lifted for this load test: RATE_LIMITS=ws_connect={per_ip}/{window} (handshakes per IP, default "
        f"{count}/{window}: every socket comes from 127.0.0.1), WS_MAX_SOCKETS_PER_USER={per_user} (default "
        f"{Settings.ws_max_sockets_per_user}: {sockets:,} sockets of {users} users); every other limit at its default"
    )
    return env, said


async def open_sockets(
    url: str, tokens: list[str], count: int, offset: int, concurrency: int
) -> tuple[list[ClientConnection], int]:
    sem = asyncio.Semaphore(concurrency)
    failures = 0

    async def one(i: int) -> ClientConnection | None:
        nonlocal failures
        async with sem:
            try:
                return await connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}"},
                    subprotocols=["i9.json"],  # type: ignore[list-item]
                    compression=None,
                    ping_interval=None,  # the server pings every 25 s; the client answers
                    open_timeout=60,
                    max_size=2**20,
                )
            except Exception as exc:
                failures += 1
                if failures <= 5:
                    h.say(f"#   connect failed: {exc!r}")
                return None

    opened = await asyncio.gather(*(one(offset + i) for i in range(count)))
    return [ws for ws in opened if ws is not None], failures


async def ping_sample(sockets: list[ClientConnection], sample: int) -> tuple[int, int, float]:
    """Send ``ping`` on a random sample; returns (answered, asked, p50 ms)."""
    chosen = random.Random(len(sockets)).sample(sockets, min(sample, len(sockets)))
    times: list[float] = []

    async def one(i: int, ws: ClientConnection) -> bool:
        ref = f"p{i}"
        started = time.perf_counter()
        try:
            await ws.send(orjson.dumps({"ref": ref, "action": "ping", "data": {}}).decode())
            async with asyncio.timeout(15):
                while True:
                    frame = orjson.loads(await ws.recv())
                    if frame.get("type") == "ack" and frame["data"].get("ref") == ref:
                        times.append(time.perf_counter() - started)
                        return bool(frame["data"]["ok"] and frame["data"]["result"].get("gateway"))
        except Exception as exc:
            h.say(f"#   ping failed: {exc!r}")
            return False

    answered = sum(await asyncio.gather(*(one(i, ws) for i, ws in enumerate(chosen))))
    times.sort()
    return answered, len(chosen), h.percentile(times, 50) * 1000


async def run(server: h.Server, bench: h.Bench, args: argparse.Namespace) -> dict[str, Any]:
    mail_dir = Path(server.env["VAR_DIR"]) / "mail"
    users = [
        await h.signup(server.base_url, mail_dir, f"idle{bench.run_id[:6]}{i}", ip=f"10.8.0.{i + 1}")
        for i in range(args.users)
    ]
    tokens = [u.access_token for u in users]
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        shard_pids = [int(s["pid"]) for s in (await http.get("/api/v1/_test/shards")).json()]
    worker = server.worker_pids[0]
    url = h.ws_url(server.base_url)
    checkpoints: list[dict[str, Any]] = []

    def measure(label: str, sockets: int, open_s: float) -> None:
        checkpoints.append(
            {
                "label": label,
                "sockets": sockets,
                "open_s": open_s,
                "worker": h.process_memory(worker),
                "shards": h.memory_of(shard_pids),
                "client": h.process_memory(os.getpid()),
            }
        )
        m = checkpoints[-1]["worker"]
        h.say(f"#   {label}: {sockets} sockets, worker RSS {m.rss / h.MIB:.1f} MiB USS {m.uss / h.MIB:.1f} MiB")

    measure("server idle", 0, 0.0)
    sockets: list[ClientConnection] = []
    failures = 0
    open_total = 0.0
    plan = [args.warm] + [
        (args.sockets - args.warm) // 4 + (1 if i < (args.sockets - args.warm) % 4 else 0) for i in range(4)
    ]
    for step, count in enumerate(plan):
        started = time.perf_counter()
        opened, failed = await open_sockets(url, tokens, count, len(sockets), args.concurrency)
        open_total += time.perf_counter() - started
        sockets += opened
        failures += failed
        await asyncio.sleep(args.settle)
        measure("baseline (after warm-up)" if step == 0 else f"step {step}", len(sockets), open_total)

    answered, asked, ping_ms = await ping_sample(sockets, args.sample)
    h.say(f"#   ping: {answered}/{asked} answered, p50 {ping_ms:.1f} ms; holding {args.hold:.0f} s ...")
    await asyncio.sleep(args.hold)
    measure(f"after {args.hold:.0f} s idle", len(sockets), open_total)
    answered2, asked2, ping2_ms = await ping_sample(sockets, args.sample)
    closed = Counter(ws.close_code for ws in sockets if ws.close_code is not None)
    for ws in sockets:
        ws.transport.abort()
    return {
        "checkpoints": checkpoints,
        "failures": failures,
        "open_s": open_total,
        "ping": (answered, asked, ping_ms),
        "ping_after_hold": (answered2, asked2, ping2_ms),
        "closed_meanwhile": sum(closed.values()),
        "close_codes": dict(closed),
        "server_log": h.log_summary(server.log_path),
        "opened": len(sockets),
    }


def _kib_each(delta: int, count: int) -> float | str:
    return delta / count / 1024 if count > 0 else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=10_000, help="sockets to open (target 10,000)")
    parser.add_argument("--users", type=int, default=4, help="users the sockets belong to (round robin)")
    parser.add_argument("--warm", type=int, default=100, help="sockets opened before the baseline")
    parser.add_argument("--concurrency", type=int, default=50, help="handshakes in flight")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before each measurement")
    parser.add_argument("--hold", type=float, default=30.0, help="idle seconds before the second ping check")
    parser.add_argument("--sample", type=int, default=200, help="sockets asked to ping")
    args = h.parse_args(parser, SMOKE)
    limit = h.raise_nofile()
    if args.sockets + 200 > limit:
        parser.error(f"RLIMIT_NOFILE is {limit}: at most {limit - 200} sockets from this process")

    lifted, lifted_said = lifted_limits(args.sockets, args.users)
    with h.Bench("ws_idle", smoke=args.smoke) as bench:
        dsn = bench.database()
        prefix = bench.redis_prefix()
        head = bench.ray_head(num_cpus=2)
        # One worker process: the gateway measured. Tokens outlive the run (default 15 min).
        server = bench.server(dsn, prefix, head, {"WORKERS": "1", "ACCESS_TOKEN_TTL": "7200", **lifted})
        h.say(f"# gateway worker pid {server.worker_pids[0]} (server pid {server.process.pid})")
        h.say(f"# {lifted_said}")
        result = uvloop.run(run(server, bench, args))

    cps = result["checkpoints"]
    base = cps[1]
    rows = []
    for cp in cps:
        added = cp["sockets"] - base["sockets"]
        rows.append(
            [
                cp["label"],
                cp["sockets"],
                cp["open_s"],
                cp["worker"].rss / h.MIB,
                cp["worker"].uss / h.MIB,
                _kib_each((cp["worker"] - base["worker"]).rss, added),
                _kib_each((cp["worker"] - base["worker"]).uss, added),
                _kib_each((cp["shards"] - base["shards"]).uss, added),
                _kib_each((cp["client"] - base["client"]).uss, added),
            ]
        )
    final = cps[-2]
    added = final["sockets"] - base["sockets"]
    per_rss = (final["worker"] - base["worker"]).rss / max(1, added)
    per_uss = (final["worker"] - base["worker"]).uss / max(1, added)
    a, n, ms = result["ping"]
    a2, n2, ms2 = result["ping_after_hold"]
    h.say()
    h.say(f"# {h.command_line()}")
    h.say(
        h.table(
            [
                "checkpoint",
                "sockets",
                "open s (cum.)",
                "worker RSS MiB",
                "worker USS MiB",
                "RSS KiB/socket",
                "USS KiB/socket",
                "shards USS KiB/socket",
                "client USS KiB/socket",
            ],
            rows,
        )
    )
    h.say(
        f"Opened {result['opened']:,} sockets ({result['failures']} failed) in {result['open_s']:.1f} s "
        f"({result['opened'] / result['open_s']:,.0f}/s). Worker growth per socket: "
        f"RSS {per_rss / 1024:.1f} KiB, USS {per_uss / 1024:.1f} KiB (target <= 50 KB: "
        f"{'met' if per_rss <= TARGET_BYTES else 'MISSED'}). Ping: {a}/{n} answered (p50 {ms:.1f} ms); after "
        f"the hold {a2}/{n2} (p50 {ms2:.1f} ms); sockets closed by the server meanwhile: {result['closed_meanwhile']} "
        f"(close codes {result['close_codes']})."
    )
    h.say(lifted_said[0].upper() + lifted_said[1:] + ".")
    for line in result["server_log"]:
        h.say(f"server log: {line}")
    if result["failures"] or result["opened"] < args.sockets or a < n or a2 < n2:
        h.say(
            f"FAILED: {args.sockets - result['opened']:,} of {args.sockets:,} sockets did not open; "
            f"{n - a + n2 - a2} pings unanswered"
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
