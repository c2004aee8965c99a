"""Profile and follow-list reads on a synthetic graph: requests/s as a ratio to ``GET /healthz`` of the same server.

Seeds its own database with ``benchmarks/graph_seed.py`` (100k users, 2M follows, power-law followers: the most
followed user, "the celebrity", has about 90k), starts ``python -m api`` (2 worker processes, log level INFO:
one access-log line per request as in production) with its own Redis prefix and Ray head
(``benchmarks/_harness.py``), signs one viewer up through the real flow and has it follow the celebrity
(``PUT /users/{celebrity}/follow``), then loads with ``wrk`` from one separate load process (1 thread,
``--connections`` connections, keep-alive), in rounds of: ``GET /healthz``, then

- ``GET /api/v1/users/{username}`` of a random one of the 100k users (a wrk Lua script), anonymous and with the
  viewer's token (``followed_by_me`` / ``follows_me``: one more query);
- ``GET /api/v1/users/{celebrity}/followers?limit=20``: the first page anonymous and with the token, and a deep
  page with the token (the keyset cursor of the follower at ``--depth`` of the celebrity's list);
- ``GET /api/v1/users/{most following}/following?limit=20`` with the token (the user who follows the most).

Each endpoint's ratio is to the healthz of its own round (drift on a shared machine hits both alike); the tables
give medians over ``--rounds``, wrk's p50 / p99 (closed loop: latency at that concurrency, not under a fixed
rate), every non-2xx answer, and the api workers' CPU time per request (user + system, /proc), which other load
barely moves: its healthz/endpoint quotient is the ratio the workers alone would allow. After the load,
``EXPLAIN (ANALYZE, BUFFERS)`` of each route's queries, with the SQL taken from ``storage/users.py`` /
``storage/graph.py`` themselves (they are called with a connection that only records).

    apt-get install -y wrk     # Debian's wrk 4.1; the load process
    .venv/bin/python benchmarks/graph_reads.py [--duration 8] [--rounds 3] [--connections 64] [--depth 0.5] [--smoke]
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
import re
import shutil
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx
import psutil

from api.pagination import decode_cursor, encode_cursor
from benchmarks import _harness as h
from benchmarks import graph_seed
from storage import graph as graph_store
from storage import users as user_store

PAGE = 20
# A graph of 1,000 users (its celebrity has 999 followers); no warm-up and one wrk connection (wrk runs whole
# seconds: the run stays light).
SMOKE = {"users": 1000, "follows": 20_000, "duration": 1, "warmup": 0, "rounds": 1, "connections": 1}

# One random user's profile per request (LuaJIT's math.random, fixed seed): the whole table, not one hot row.
PROFILE_LUA = """
math.randomseed(9)
request = function()
  return wrk.format(nil, string.format("/api/v1/users/%s%06d", "user", math.random(0, {users} - 1)))
end
"""


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str  # for the Lua script: any one of its paths (checked once), the script picks the rest
    auth: bool
    script: Path | None = None


WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
WRK_ERRORS = re.compile(r"Socket errors:(.*)")
WRK_TOTAL = re.compile(r"(\d+) requests in")
WRK_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, headers: dict[str, str], connections: int, duration: int, script: Path | None) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True, timeout=duration + 60).stdout
    rps = WRK_RPS.search(out)
    if rps is None:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{out}")
    non2xx = WRK_NON2XX.search(out)
    errors = WRK_ERRORS.search(out)
    total = WRK_TOTAL.search(out)
    latency = {q: float(v) * UNIT_MS[unit] for q, v, unit in WRK_LATENCY.findall(out)}
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)) if total else 0,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
        "p50": latency.get("50", float("nan")),
        "p99": latency.get("99", float("nan")),
    }


def loaded(
    workers: list[psutil.Process],
    url: str,
    headers: dict[str, str],
    connections: int,
    duration: int,
    script: Path | None = None,
) -> dict[str, Any]:
    """wrk against ``url``, with the api workers' CPU seconds spent meanwhile (per request, in microseconds)."""
    before = h.cpu_seconds(workers)
    result = wrk(url, headers, connections, duration, script)
    spent = h.cpu_seconds(workers) - before
    result["cpu_us"] = 1e6 * spent / max(1, result["requests"])
    return result


async def deep_cursor(dsn: str, user_id: int, offset: int) -> str:
    """The cursor a client holds after paging ``offset`` followers into ``user_id``'s list."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            """SELECT created_at, follower_id FROM follows WHERE followee_id = $1
               ORDER BY created_at DESC, follower_id DESC OFFSET $2 LIMIT 1""",
            user_id,
            offset - 1,
        )
    finally:
        await conn.close()
    assert row is not None
    return encode_cursor(row["created_at"], int(row["follower_id"]))


def check_once(base_url: str, endpoints: list[Endpoint], token: str, celebrity: str, followers: int) -> None:
    """The loaded requests are the real thing: 200 and the right body."""
    for ep in endpoints:
        headers = {"Authorization": f"Bearer {token}"} if ep.auth else {}
        reply = httpx.get(base_url + ep.path, headers=headers, timeout=30)
        assert reply.status_code == 200, (ep.name, reply.status_code, reply.text)
        body = reply.json()
        if ep.name.startswith("profile"):
            assert body["username"].startswith("user"), body
            assert ("followed_by_me" in body) == ep.auth, body
        elif ep.name != "healthz":
            assert len(body["items"]) == PAGE and body["next_cursor"], (ep.name, body)
    profile = httpx.get(base_url + f"/api/v1/users/{celebrity}", headers={"Authorization": f"Bearer {token}"})
    assert profile.json()["followers_count"] == followers + 1, profile.json()
    assert profile.json()["followed_by_me"] is True, profile.json()


class _Recorder:
    """A stand-in connection: keeps the SQL and arguments the storage functions send, answers nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        self.calls.append((sql, args))
        return []

    async def fetchrow(self, sql: str, *args: Any) -> None:
        self.calls.append((sql, args))


async def explain(dsn: str, queries: dict[str, Any]) -> tuple[list[list[Any]], dict[str, list[str]]]:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of each storage call (name -> coroutine function of a connection), 5 times:
    the first (coldest) and best execution times, the indexes of the plan, and the last plan in full."""
    rows: list[list[Any]] = []
    plans: dict[str, list[str]] = {}
    conn = await asyncpg.connect(dsn)
    try:
        for name, call in queries.items():
            recorder = _Recorder()
            await call(cast(Any, recorder))
            ((sql, args),) = recorder.calls
            times = []
            plan: list[str] = []
            for _ in range(5):
                plan = [r[0] for r in await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)]
                found = next(line for line in plan if line.startswith("Execution Time"))
                times.append(float(re.findall(r"[\d.]+", found)[0]))
            indexes = sorted(set(re.findall(r" using (\w+)", " ".join(plan))))
            buffers = next((line.strip() for line in plan if "Buffers:" in line), "")
            rows.append([name, times[0], min(times), ", ".join(indexes) or "none (!)", buffers])
            plans[name] = plan
    finally:
        await conn.close()
    return rows, plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--follows", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=9, help="graph_seed's random seed")
    parser.add_argument("--duration", type=int, default=8, help="seconds of load per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load per endpoint first (0: none)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of healthz + every endpoint")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--depth", type=float, default=0.5, help="deep page: this far into the celebrity's list")
    args = h.parse_args(parser, SMOKE)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install -y wrk)")

    with h.Bench("graph_reads", smoke=args.smoke) as bench:
        dsn = bench.database()
        graph = asyncio.run(graph_seed.seed(dsn, args.users, args.follows, args.seed))
        h.say(f"# seeded {graph.users:,} users, {graph.follows:,} follows; median followers {graph.median_followers}")
        h.say("# most followed: " + ", ".join(f"{name} {n:,}" for name, _, n in graph.top))
        h.say("# seeding: " + ", ".join(f"{phase} {s:.1f} s" for phase, s in graph.seconds.items()))
        celebrity, celebrity_id, celebrity_followers = graph.top[0]
        busiest, busiest_id, busiest_following = graph.most_following

        prefix = bench.redis_prefix()
        head = bench.ray_head(num_cpus=2)
        extra = {"LOG_LEVEL": "INFO", "ACCESS_TOKEN_TTL": "3600"}  # the default level; one token for the whole run
        server = bench.server(dsn, prefix, head, extra)
        h.say(f"# api workers {server.worker_pids}; load: 1 wrk process, 1 thread, {args.connections} connections")
        viewer = asyncio.run(h.signup(server.base_url, Path(server.env["VAR_DIR"]) / "mail", f"bench{os.getpid()}"))
        auth = {"Authorization": f"Bearer {viewer.access_token}"}
        followed = httpx.put(server.base_url + f"/api/v1/users/{celebrity}/follow", headers=auth, timeout=30)
        assert followed.status_code == 200 and followed.json() == {"following": True}, followed.text

        depth = max(PAGE, int(args.depth * celebrity_followers))
        cursor = asyncio.run(deep_cursor(dsn, celebrity_id, depth))
        script = bench.workdir / "profiles.lua"
        script.write_text(PROFILE_LUA.replace("{users}", str(graph.users)))
        pages = f"/api/v1/users/{celebrity}/followers?limit={PAGE}"
        endpoints = [
            Endpoint("profile, anonymous", f"/api/v1/users/{graph_seed.username(0)}", False, script),
            Endpoint("profile, token", f"/api/v1/users/{graph_seed.username(0)}", True, script),
            Endpoint("followers page 1, anonymous", pages, False),
            Endpoint("followers page 1, token", pages, True),
            Endpoint(f"followers deep page ({depth:,}), token", f"{pages}&cursor={cursor}", True),
            Endpoint("following page 1, token", f"/api/v1/users/{busiest}/following?limit={PAGE}", True),
        ]
        h.say(f"# celebrity {celebrity} ({celebrity_followers + 1:,} followers with the viewer), deep cursor {cursor}")
        h.say(f"# following: {busiest} follows {busiest_following}")
        check_once(server.base_url, endpoints, viewer.access_token, celebrity, celebrity_followers)

        health_url = server.base_url + "/healthz"
        workers = [psutil.Process(pid) for pid in server.worker_pids]
        if args.warmup:
            wrk(health_url, {}, args.connections, args.warmup, None)  # warm every path (imports, pools, caches)
            for ep in endpoints:
                wrk(server.base_url + ep.path, auth if ep.auth else {}, args.connections, args.warmup, ep.script)
        rows = []
        results: dict[str, list[dict[str, Any]]] = {"healthz": [], **{ep.name: [] for ep in endpoints}}
        for r in range(1, args.rounds + 1):
            health = loaded(workers, health_url, {}, args.connections, args.duration)
            health["ratio"] = health["cpu_ratio"] = 1.0
            results["healthz"].append(health)
            rows.append(_row(r, "healthz", health))
            for ep in endpoints:
                url = server.base_url + ep.path
                res = loaded(workers, url, auth if ep.auth else {}, args.connections, args.duration, ep.script)
                res["ratio"] = res["rps"] / health["rps"]
                res["cpu_ratio"] = health["cpu_us"] / res["cpu_us"]
                results[ep.name].append(res)
                rows.append(_row(r, ep.name, res))
        h.say()
        h.say(
            h.table(
                [
                    "round",
                    "endpoint",
                    "req/s",
                    "ratio to healthz",
                    "p50 ms",
                    "p99 ms",
                    "requests",
                    "non-2xx",
                    "socket errors",
                    "worker CPU us/req",
                ],
                rows,
            )
        )
        summary = []
        for name, runs in results.items():
            ratios = [res["ratio"] for res in runs]
            summary.append(
                [
                    name,
                    statistics.median(res["rps"] for res in runs),
                    f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})",
                    statistics.median(res["p50"] for res in runs),
                    statistics.median(res["p99"] for res in runs),
                    sum(res["non2xx"] for res in runs),
                    round(statistics.median(res["cpu_us"] for res in runs)),
                    round(statistics.median(res["cpu_ratio"] for res in runs), 2),
                ]
            )
        h.say()
        h.say(
            h.table(
                [
                    "endpoint",
                    "req/s median",
                    "ratio to healthz median (min-max)",
                    "p50 ms median",
                    "p99 ms median",
                    "non-2xx",
                    "worker CPU us/req median",
                    "CPU quotient healthz/endpoint median",
                ],
                summary,
            )
        )

        first_page = httpx.get(server.base_url + pages, timeout=30).json()["items"]
        page_ids = [int(item["id"]) for item in first_page]
        position = decode_cursor(cursor)
        assert position is not None
        queries = {
            "profile: find_user_by_username": lambda c: user_store.find_user_by_username(c, graph_seed.username(0)),
            "followers page 1": lambda c: graph_store.followers_page(c, celebrity_id, PAGE + 1),
            f"followers deep page ({depth:,})": lambda c: graph_store.followers_page(
                c, celebrity_id, PAGE + 1, position
            ),
            "following page 1": lambda c: graph_store.following_page(c, busiest_id, PAGE + 1),
            "viewer_flags of page 1": lambda c: graph_store.viewer_flags(c, viewer.id, page_ids),
        }
        explained, plans = asyncio.run(explain(dsn, queries))
        h.say()
        h.say(h.table(["query", "first ms", "best of 5 ms", "indexes", "buffers (top node)"], explained))
        for name in ("followers page 1", f"followers deep page ({depth:,})"):
            h.say()
            h.say(f"EXPLAIN (ANALYZE, BUFFERS) {name} of {celebrity}:")
            for line in plans[name]:
                h.say("    " + line)
        for line in h.log_summary(server.log_path):
            h.say(f"# server log: {line}")


def _row(r: int, name: str, res: dict[str, Any]) -> list[Any]:
    return [
        r,
        name,
        res["rps"],
        round(res["ratio"], 3),
        res["p50"],
        res["p99"],
        res["requests"],
        res["non2xx"],
        res["socket_errors"],
        round(res["cpu_us"]),
    ]


if __name__ == "__main__":
    main()
