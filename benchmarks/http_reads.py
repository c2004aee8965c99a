"""HTTP read path: ``GET /api/v1/me`` requests/s as a ratio to ``GET /healthz`` of the same server in the same run.

Starts ``python -m api`` (2 worker processes, default log level INFO, so one access-log line per request as in
production) with its own database, Redis prefix and Ray head (``benchmarks/_harness.py``), signs one user up
through the real flow, then loads both endpoints with ``wrk`` from one separate load process (1 thread,
64 connections, keep-alive), in JSON and in MessagePack (``Accept: application/msgpack``), alternating
healthz / me for ``--rounds`` rounds so that drift on a shared machine hits both alike. The ratio is the median
of the per-round ratios. Every non-2xx answer is counted and reported (a fast error is not a read). On a shared
machine the ratio swings with whatever else runs, so each run also reports the api workers' own CPU time per
request (user + system, /proc), which other load barely moves: its healthz/me quotient is the ratio the workers
alone would allow.

    apt-get install -y wrk     # Debian's wrk 4.1; the load process
    .venv/bin/python benchmarks/http_reads.py [--duration 8] [--rounds 3] [--connections 64] [--smoke]

``--encoding`` instead times, in this process and with no server, the response path of one ``Me`` and of a page
of 20: FastAPI's ``response_model`` validation and JSON encoder (plus the JSON -> MessagePack re-encode the codec
middleware did) against ``api.codec.encode`` (orjson or msgpack, once).
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
import contextlib
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import msgpack
import psutil

from benchmarks import _harness as h

TARGET_RATIO = 0.45
# No warm-up and one wrk connection at smoke scale (wrk runs whole seconds: the run stays light); with
# --encoding, 1/200 of the repetitions.
SMOKE = {"duration": 1, "warmup": 0, "rounds": 1, "connections": 1}
ENCODINGS = {"json": "application/json", "msgpack": "application/msgpack"}


def start_server(bench: h.Bench, dsn: str, prefix: str, head: Any) -> h.Server:
    """``python -m api`` on a free port, ready on both workers (each worker's pid comes from the test-only
    ``/api/v1/_test/whoami``; servers older than that route answered it in ``/readyz``)."""
    port = h.free_port()
    extra = {"LOG_LEVEL": "INFO", "ACCESS_TOKEN_TTL": "3600"}  # the default level; one token for the whole run
    env = bench.server_env(dsn, prefix, head, port, **extra)
    log_path = bench.workdir / "server.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [h.PYTHON, "-m", "api"],
            env=env,
            cwd=h.REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    bench.defer("api server", lambda: h.stop_server(process))
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    pids: set[int] = set()
    while len(pids) < int(env["WORKERS"]):
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"server not ready in time:\n{log_path.read_text()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            if httpx.get(base_url + "/readyz", timeout=5).status_code == 200:
                who = httpx.get(base_url + "/api/v1/_test/whoami", timeout=5)
                body = who.json() if who.status_code == 200 else httpx.get(base_url + "/readyz", timeout=5).json()
                pids.add(int(body["pid"]))
                continue
        time.sleep(0.2)
    return h.Server(base_url, env, process, log_path, sorted(pids))


WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
WRK_ERRORS = re.compile(r"Socket errors:(.*)")
WRK_TOTAL = re.compile(r"(\d+) requests in")


def wrk(url: str, headers: dict[str, str], connections: int, duration: int) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True, timeout=duration + 60).stdout
    rps = WRK_RPS.search(out)
    if rps is None:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{out}")
    non2xx = WRK_NON2XX.search(out)
    errors = WRK_ERRORS.search(out)
    total = WRK_TOTAL.search(out)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out)
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)) if total else 0,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
        "p99": p99.group(1) if p99 else "?",
    }


def loaded(
    workers: list[psutil.Process], url: str, headers: dict[str, str], connections: int, duration: int
) -> dict[str, Any]:
    """wrk against ``url``, with the api workers' CPU seconds spent meanwhile (per request, in microseconds)."""
    before = h.cpu_seconds(workers)
    result = wrk(url, headers, connections, duration)
    spent = h.cpu_seconds(workers) - before
    result["cpu_us"] = 1e6 * spent / max(1, result["requests"])
    return result


def check_once(base_url: str, token: str) -> None:
    """The loaded requests are the real thing: 200, the negotiated type, a Me body."""
    for name, ctype in ENCODINGS.items():
        reply = httpx.get(base_url + "/api/v1/me", headers={"Authorization": f"Bearer {token}", "Accept": ctype})
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"].startswith(ctype), (name, reply.headers["content-type"])
        body = msgpack.unpackb(reply.content) if name == "msgpack" else reply.json()
        assert body["username"].startswith("bench"), body


def encoding_costs(scale: int = 1) -> None:
    """The table of encoding costs; ``scale`` divides the repetitions."""
    import datetime as dt
    import timeit

    import msgspec
    import orjson
    from fastapi.responses import JSONResponse
    from fastapi.routing import serialize_response
    from fastapi.utils import create_model_field
    from pydantic import BaseModel

    from api.codec import encode
    from domain import present

    class Me(BaseModel):  # FastAPI's default path, the baseline: a pydantic model of the same shape as domain/wire Me
        id: str
        username: str
        name: str
        avatar: str | None
        followed_by_me: bool
        follows_me: bool
        bio: str
        followers_count: int
        following_count: int
        posts_count: int
        created_at: str
        email: str
        birthday: str

    class Page(BaseModel):
        items: list[Me]
        next_cursor: str | None

    row = {
        "id": 386255577090941337,
        "username": "bench12345",
        "name": "Bench12345",
        "avatar_media_id": None,
        "bio": "hello there",
        "followers_count": 12,
        "following_count": 7,
        "posts_count": 3,
        "created_at": dt.datetime.now(dt.UTC),
        "email": "bench12345@example.com",
        "birthday": dt.date(2000, 1, 31),
    }
    base = "http://127.0.0.1:8000"
    plain = msgspec.to_builtins(present.me(row, base))  # what the old path validated: plain data
    bodies = {
        "one Me": (Me, lambda: present.me(row, base), lambda: dict(plain), 20_000 // scale),
        "a page of 20 Me": (
            Page,
            lambda: {"items": [present.me(row, base) for _ in range(20)], "next_cursor": None},
            lambda: {"items": [dict(plain) for _ in range(20)], "next_cursor": None},
            2_000 // scale,
        ),
    }
    rows = []
    loop = asyncio.new_event_loop()
    for name, (model, build, build_plain, n) in bodies.items():
        field = create_model_field(name="Response", type_=model, mode="serialization")

        async def old_json(build: Any = build_plain, field: Any = field) -> bytes:
            content = await serialize_response(field=field, response_content=build(), is_coroutine=True)
            return bytes(JSONResponse(content).body)

        async def old_msgpack(old_json: Any = old_json) -> bytes:
            packed: bytes = msgpack.packb(orjson.loads(await old_json()), use_bin_type=True)
            return packed

        async def repeat(fn: Any, n: int = n) -> None:
            for _ in range(n):
                await fn()

        def best_async(fn: Any, n: int = n) -> float:
            return min(timeit.repeat(lambda: loop.run_until_complete(repeat(fn)), number=1, repeat=5)) / n

        def best(fn: Any, n: int = n) -> float:
            return min(timeit.repeat(fn, number=n, repeat=5)) / n

        rows.append(
            [
                name,
                round(best(build) * 1e6, 1),
                round(best_async(old_json) * 1e6, 1),
                round(best_async(old_msgpack) * 1e6, 1),
                round(best(lambda build=build: encode(build(), False)) * 1e6, 1),
                round(best(lambda build=build: encode(build(), True)) * 1e6, 1),
            ]
        )
    loop.close()
    h.say(
        h.table(
            [
                "body",
                "presenter only us",
                "before: response_model + JSON us",
                "before: + msgpack re-encode us",
                "after: wire struct, msgspec JSON us",
                "after: wire struct, msgspec msgpack us",
            ],
            rows,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=8, help="seconds of load per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load first (0: none)")
    parser.add_argument("--rounds", type=int, default=3, help="healthz/me pairs per encoding")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--encoding", action="store_true", help="only the in-process encoding costs")
    args = h.parse_args(parser, SMOKE)
    if args.encoding:
        encoding_costs(200 if args.smoke else 1)
        return
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install -y wrk)")

    with h.Bench("http_reads", smoke=args.smoke) as bench:
        dsn = bench.database()
        prefix = bench.redis_prefix()
        head = bench.ray_head(num_cpus=2)
        server = start_server(bench, dsn, prefix, head)
        h.say(f"# api workers {server.worker_pids}; load: 1 wrk process, 1 thread, {args.connections} connections")
        user = asyncio.run(h.signup(server.base_url, Path(server.env["VAR_DIR"]) / "mail", f"bench{os.getpid()}"))
        check_once(server.base_url, user.access_token)
        urls = {"healthz": server.base_url + "/healthz", "me": server.base_url + "/api/v1/me"}
        workers = [psutil.Process(pid) for pid in server.worker_pids]
        rows = []
        summary = []
        for enc, ctype in ENCODINGS.items():
            headers = {"Accept": ctype}
            auth = {**headers, "Authorization": f"Bearer {user.access_token}"}
            for name, url in urls.items():  # warm both paths (imports, pools, caches)
                if args.warmup:
                    wrk(url, auth if name == "me" else headers, args.connections, args.warmup)
            ratios = []
            cpu_ratios = []
            for r in range(1, args.rounds + 1):
                health = loaded(workers, urls["healthz"], headers, args.connections, args.duration)
                me = loaded(workers, urls["me"], auth, args.connections, args.duration)
                ratio = me["rps"] / health["rps"]
                ratios.append(ratio)
                cpu_ratios.append(health["cpu_us"] / me["cpu_us"])
                for name, res in (("healthz", health), ("me", me)):
                    rows.append(
                        [
                            enc,
                            r,
                            name,
                            res["rps"],
                            res["p99"],
                            res["requests"],
                            res["non2xx"],
                            res["socket_errors"],
                            round(res["cpu_us"]),
                        ]
                    )
                rows[-1] += [round(ratio, 3), round(cpu_ratios[-1], 3)]
                rows[-2] += ["", ""]
            summary.append(
                [
                    enc,
                    round(min(ratios), 3),
                    round(statistics.median(ratios), 3),
                    round(max(ratios), 3),
                    round(statistics.median(cpu_ratios), 3),
                ]
            )
        h.say()
        h.say(
            h.table(
                [
                    "encoding",
                    "round",
                    "endpoint",
                    "req/s",
                    "p99",
                    "requests",
                    "non-2xx",
                    "socket errors",
                    "worker CPU us/req",
                    "me/healthz req/s",
                    "healthz/me CPU",
                ],
                rows,
            )
        )
        h.say()
        h.say(
            h.table(
                ["encoding", "req/s ratio min", "req/s ratio median", "req/s ratio max", "CPU ratio median"], summary
            )
        )
        h.say(f"target: median ratio >= {TARGET_RATIO}")
        for line in h.log_summary(server.log_path):
            h.say(f"# server log: {line}")


if __name__ == "__main__":
    main()
