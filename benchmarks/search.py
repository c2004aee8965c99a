"""Search through the real server on a seeded data set (issue 13): read ratios and the cost of indexing.

Starts ``python -m api`` (2 workers, LOG_LEVEL WARNING) with its own database, Redis prefix and Ray head
(``benchmarks/_harness.py``), seeds ``--users`` users and ``--posts`` posts with ``benchmarks/seed_search.py``,
then:

- **reads**: ``wrk`` (1 thread, ``--connections`` 16, keep-alive) loads each search below and ``GET /healthz`` of the
  same server, in ``--rounds`` rounds (ratio = search req/s / that round's healthz req/s), with a token (a viewer
  who follows 50 users): posts by a frequent word, by a rare word, by two words, by a misspelled word (the
  correction path), by ``#tag``, ``from:`` with a word; users by a 3-letter prefix and by a misspelled name;
  hashtags by a 2-letter prefix;
- **indexing cost**: closed-loop ``POST /posts`` (``--creates`` per phase, 16 in flight, each with its own PNG
  uploaded beforehand, a caption of 10 vocabulary words and a hashtag), with the search trigger on, then off
  (``ALTER TABLE posts DISABLE TRIGGER posts_search_insert``: no document, no vocabulary update, nothing for the
  GIN index), then on again; throughput and p99 per phase.

    apt-get install -y wrk
    .venv/bin/python benchmarks/search.py [--users 100000] [--posts 1000000] [--connections 16] [--duration 8]
        [--rounds 3] [--creates 300] [--smoke]
"""

from __future__ import annotations

import os
import sys

sys.path.remove(os.path.dirname(os.path.realpath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import asyncio
import random
import shutil
import statistics
import time
import urllib.parse
from typing import Any

import asyncpg
import httpx
import psutil

from benchmarks import _harness as h
from benchmarks.posts import loaded, noise_png, wrk
from benchmarks.seed_search import seed
from domain.tokens import TokenService

WARMUP_S = 2  # wrk on healthz and every search before the rounds; none at smoke scale
SMOKE = {"users": 500, "posts": 2000, "connections": 1, "duration": 1, "rounds": 1, "creates": 8}


def queries(data: Any, sample_user: str, sample_name: str) -> list[tuple[str, dict[str, str]]]:
    words = data.vocabulary
    frequent = words[0]
    rare = words[-1]
    two = f"{words[3]} {words[40]}"
    misspelled = rare[:2] + rare[3] + rare[2] + rare[4:] if len(rare) > 4 else rare + "x"
    first, _, last = sample_name.partition(" ")
    name_typo = first + " " + last[:-1]
    return [
        ("posts: a frequent word", {"q": frequent}),
        ("posts: a rare word", {"q": rare}),
        ("posts: two words", {"q": two}),
        ("posts: a misspelled word", {"q": misspelled}),
        ("posts: #tag", {"q": f"#{data.tags[5]}"}),
        ("posts: from: + word", {"q": f"from:{sample_user} {words[10]}"}),
        ("users: 3-letter prefix", {"q": sample_user[:3], "type": "users"}),
        ("users: misspelled name", {"q": name_typo, "type": "users"}),
        ("hashtags: 2-letter prefix", {"q": data.tags[7][:2], "type": "hashtags"}),
    ]


async def creates(base_url: str, token: str, n: int, concurrency: int, words: list[str], tag: str) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, timeout=60, headers=auth) as http:
        media = []
        for i in range(n):
            data = noise_png(i + random.randrange(1 << 20))
            made = (
                await http.post(
                    "/api/v1/media", json={"purpose": "post", "content_type": "image/png", "size": len(data)}
                )
            ).json()
            await http.request(
                made["upload"]["method"], made["upload"]["url"], content=data, headers=made["upload"]["headers"]
            )
            await http.post(f"/api/v1/media/{made['media_id']}/complete")
            media.append(made["media_id"])
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        queue = list(media)

        async def worker() -> None:
            while queue:
                mid = queue.pop()
                caption = " ".join(random.choices(words[:2000], k=10)) + f" #{tag}"
                started = time.perf_counter()
                reply = await http.post("/api/v1/posts", json={"type": "photo", "caption": caption, "media_ids": [mid]})
                latencies.append(1000 * (time.perf_counter() - started))
                statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - began
    latencies.sort()
    return {
        "rps": n / seconds,
        "p50": h.percentile(latencies, 50),
        "p99": h.percentile(latencies, 99),
        "statuses": statuses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--creates", type=int, default=300)
    args = h.parse_args(parser, SMOKE)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install -y wrk)")
    with h.Bench("search", smoke=args.smoke) as bench:
        dsn = bench.database()
        prefix = bench.redis_prefix()
        head = bench.ray_head()
        data = asyncio.run(seed(dsn, args.users, args.posts))
        h.say("# seeded: " + ", ".join(f"{k} {v:.0f} s" for k, v in data.seconds.items()))
        extra = {"RATE_LIMITS": "write=1000000/60,auth=1000000/60", "ACCESS_TOKEN_TTL": "3600"}
        server = bench.server(dsn, prefix, head, extra)
        viewer = asyncio.run(h.signup(server.base_url, bench.workdir / "var" / "mail", f"viewer{bench.run_id[:6]}"))

        async def prepare() -> tuple[str, str]:
            conn = await asyncpg.connect(dsn)
            try:
                ids = [data.first_user + random.randrange(data.users) for _ in range(50)]
                await conn.executemany(
                    "INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    [(viewer.id, uid) for uid in ids],
                )
                sample = data.first_user + 4242 % data.users
                row = await conn.fetchrow("SELECT username, name FROM users WHERE id = $1", sample)
                await conn.execute("ANALYZE follows")
                return str(row["username"]), str(row["name"])
            finally:
                await conn.close()

        sample_user, sample_name = asyncio.run(prepare())
        token = TokenService(h.JWT_SECRET, "i9lyfe", 3600).issue_access(viewer.id, 1)
        auth = {"Authorization": f"Bearer {token}"}
        workers = [psutil.Process(pid) for pid in server.worker_pids]
        searches = queries(data, sample_user, sample_name)
        urls = [(name, f"{server.base_url}/api/v1/search?{urllib.parse.urlencode(q)}") for name, q in searches]
        with httpx.Client(timeout=30, headers=auth) as http:
            for name, url in urls:
                body = http.get(url).json()
                h.say(f"# {name}: {len(body['items'])} items, corrected {body['corrected_query']!r}")
        if not args.smoke:
            wrk(server.base_url + "/healthz", {}, args.connections, WARMUP_S)
            for _, url in urls:
                wrk(url, auth, args.connections, WARMUP_S)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in urls}
        results["healthz"] = []
        for r in range(args.rounds):
            health = loaded(workers, server.base_url + "/healthz", {}, args.connections, args.duration)
            results["healthz"].append({**health, "ratio": 1.0})
            for name, url in urls:
                res = loaded(workers, url, auth, args.connections, args.duration)
                res["ratio"] = res["rps"] / health["rps"]
                results[name].append(res)
                h.say(
                    f"# round {r + 1} {name}: {res['rps']:.0f} req/s, ratio {res['ratio']:.3f}, p99 {res['p99']:.0f} ms"
                )
        rows = []
        for name, runs in results.items():
            ratios = [x["ratio"] for x in runs]
            rows.append(
                [
                    name,
                    f"{statistics.median(x['rps'] for x in runs):.0f}",
                    f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})",
                    f"{statistics.median(x['p50'] for x in runs):.1f}",
                    f"{statistics.median(x['p99'] for x in runs):.1f}",
                    sum(x["non2xx"] for x in runs),
                    f"{statistics.median(x['cpu_us'] for x in runs):.0f}",
                    f"{statistics.median(x['pg_us'] for x in runs):.0f}",
                ]
            )
        h.say()
        h.say(
            h.table(
                ["search", "req/s", "ratio to healthz (min-max)", "p50 ms", "p99 ms", "non-2xx", "worker CPU us/req",
                 "postgres CPU us/req (machine)"],
                rows,
            )
        )  # fmt: skip

        async def toggle(on: bool) -> None:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(f"ALTER TABLE posts {'ENABLE' if on else 'DISABLE'} TRIGGER posts_search_insert")
            finally:
                await conn.close()

        create_rows = []
        for label, on in (("search indexing on", True), ("search indexing off", False), ("search indexing on", True)):
            asyncio.run(toggle(on))
            res = asyncio.run(creates(server.base_url, token, args.creates, 16, data.vocabulary, data.tags[3]))
            create_rows.append([label, f"{res['rps']:.1f}", f"{res['p50']:.0f}", f"{res['p99']:.0f}", res["statuses"]])
            h.say(f"# creates, {label}: {create_rows[-1]}")
        asyncio.run(toggle(True))
        h.say()
        h.say(h.table(["POST /posts, 16 in flight", "posts/s", "p50 ms", "p99 ms", "statuses"], create_rows))
        for line in h.log_summary(server.log_path):
            h.say(f"# log: {line}")


if __name__ == "__main__":
    main()
