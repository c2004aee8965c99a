"""The home feed through the real server: fan-out of one post to 10,000 followers, and GET /feed reads.

Starts ``python -m api`` (2 worker processes = 2 gateways, LOG_LEVEL WARNING) with its own database, Redis
prefix and Ray head (``benchmarks/_harness.py``); the fan-out workers are the 4 UserShards' consumers.

- **fan-out**: one author signs up through the real flow; ``--followers`` followers are written with COPY (counters
  exact) and all are active (their timelines exist). ``--connected`` of them open a socket (access tokens minted
  with the server's JWT secret; the kernel spreads the sockets over both gateways). The author then posts
  ``--posts`` photo posts, one at a time. Per post: time from sending ``POST /posts`` until every timeline holds
  the entry (a pipelined ZSCORE poll of all of them every 20 ms) and until each connected socket received its
  ``feed.post`` (p50/p99 over the sockets); Redis ``used_memory`` before and after, per recipient, next to the
  size of the stored event.
- **reads**: a viewer follows ``--followees`` authors who have ``--posts-small`` posts in all (posts and
  follows with COPY, ANALYZE after); ``wrk`` (1 thread, ``--connections``, keep-alive) loads ``GET /feed`` with
  the viewer's token and ``GET /healthz`` of the same server in rounds (ratio = feed req/s / healthz req/s);
  then posts by other authors are added until the database holds ``--posts-big`` posts (ANALYZE) and the feed is
  measured again: its p50 at the large size against the small.

    apt-get install -y wrk
    .venv/bin/python benchmarks/feed.py [--followers 10000] [--connected 1000] [--posts 3]
        [--followees 200] [--posts-small 10000] [--posts-big 1000000] [--connections 32] [--duration 8] [--rounds 3]
        [--skip-fanout] [--skip-big] [--profile] [--smoke]
"""

from __future__ import annotations

import os
import sys

sys.path.remove(os.path.dirname(os.path.realpath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import asyncio
import datetime as dt
import random
import shutil
import statistics
import time
from typing import Any

import asyncpg
import httpx
import msgpack
import orjson
import psutil
import redis.asyncio as aioredis
import websockets

from benchmarks import _harness as h
from benchmarks.posts import loaded, noise_png, profile, wrk
from domain.tokens import TokenService
from storage.ids import EPOCH_MS

WARMUP_S = 2  # wrk on the feed and healthz before the rounds; none at smoke scale
# The fan-out polls and samples 200 followers (and more); the feed's first page needs 20 posts.
SMOKE = {
    "followers": 300,
    "connected": 20,
    "posts": 1,
    "followees": 20,
    "posts_small": 200,
    "posts_big": 1000,
    "connections": 1,
    "duration": 1,
    "rounds": 1,
}


def entry_id(at: dt.datetime, n: int) -> int:
    return ((int(at.timestamp() * 1000) - EPOCH_MS) << 22) + (n % (1 << 22))


async def copy_users(conn: asyncpg.Connection, base: int, n: int, tag: str) -> list[int]:
    ids = [base + i for i in range(n)]
    await conn.copy_records_to_table(
        "users",
        records=[
            (uid, f"{tag}{i}", f"{tag}{i}@example.com", "Bench", dt.date(1990, 1, 1), "x") for i, uid in enumerate(ids)
        ],
        columns=["id", "username", "email", "name", "birthday", "password_hash"],
    )
    return ids


async def follow_all(conn: asyncpg.Connection, followers: list[int], followee: int) -> None:
    await conn.copy_records_to_table(
        "follows", records=[(f, followee) for f in followers], columns=["follower_id", "followee_id"]
    )
    await conn.execute("UPDATE users SET following_count = following_count + 1 WHERE id = ANY($1::bigint[])", followers)
    await conn.execute(
        "UPDATE users SET followers_count = followers_count + $2 WHERE id = $1", followee, len(followers)
    )


async def upload_and_post(http: httpx.AsyncClient, token: str, caption: str) -> tuple[dict[str, Any], float]:
    auth = {"Authorization": f"Bearer {token}"}
    data = noise_png(random.randrange(1 << 30))
    made = (
        await http.post(
            "/api/v1/media", json={"purpose": "post", "content_type": "image/png", "size": len(data)}, headers=auth
        )
    ).json()
    await http.request(made["upload"]["method"], made["upload"]["url"], content=data, headers=made["upload"]["headers"])
    await http.post(f"/api/v1/media/{made['media_id']}/complete", headers=auth)
    started = time.perf_counter()
    reply = await http.post(
        "/api/v1/posts", json={"type": "photo", "caption": caption, "media_ids": [made["media_id"]]}, headers=auth
    )
    assert reply.status_code == 201, reply.text
    return reply.json(), started


async def holds(client: aioredis.Redis, prefix: str, users: list[int], member: str) -> bool:
    async with client.pipeline(transaction=False) as pipe:
        for uid in users:
            pipe.zscore(f"{prefix}tl:{{{uid}}}", member)
        scores = await pipe.execute()
    return all(s is not None for s in scores)


async def key_bytes(client: aioredis.Redis, prefix: str, users: list[int]) -> int:
    """Bytes Redis holds for these users' timelines and event streams (MEMORY USAGE, every element counted)."""
    async with client.pipeline(transaction=False) as pipe:
        for uid in users:
            pipe.memory_usage(f"{prefix}tl:{{{uid}}}", samples=0)
            pipe.memory_usage(f"{prefix}events:{{{uid}}}", samples=0)
        sizes = await pipe.execute()
    return sum(int(s or 0) for s in sizes)


class Sockets:
    def __init__(self) -> None:
        self.arrivals: dict[str, list[float]] = {}
        self.gateways: dict[str, int] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def open(self, url: str, tokens: list[str]) -> None:
        ready = asyncio.Semaphore(50)

        async def one(token: str) -> None:
            async with ready:
                ws = await websockets.connect(
                    url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
                )
                await ws.send(orjson.dumps({"ref": "p", "action": "ping", "data": {}}).decode())
                while True:
                    frame = orjson.loads(await ws.recv())
                    if frame["type"] == "ack":
                        gw = frame["data"]["result"]["gateway"]
                        self.gateways[gw] = self.gateways.get(gw, 0) + 1
                        break
            self.tasks.append(asyncio.get_running_loop().create_task(self.read(ws)))

        await asyncio.gather(*(one(t) for t in tokens))

    async def read(self, ws: Any) -> None:
        async for raw in ws:
            frame = orjson.loads(raw)
            if frame["type"] == "feed.post":
                self.arrivals.setdefault(frame["data"]["post_id"], []).append(time.perf_counter())


async def fanout(args: argparse.Namespace, bench: h.Bench, server: h.Server, dsn: str, prefix: str) -> list[list[Any]]:
    author = await h.signup(server.base_url, bench.workdir / "var" / "mail", f"star{bench.run_id[:6]}")
    conn = await asyncpg.connect(dsn)
    base = entry_id(dt.datetime(2024, 6, 1, tzinfo=dt.UTC), 0)
    followers = await copy_users(conn, base, args.followers, "fan")
    await follow_all(conn, followers, author.id)
    await conn.execute("ANALYZE")
    await conn.close()
    client = aioredis.from_url(h.REDIS_URL)
    async with client.pipeline(transaction=False) as pipe:
        for uid in followers:
            pipe.zadd(f"{prefix}tl:{{{uid}}}", {"~": 0})
        await pipe.execute()
    tokens = TokenService(h.JWT_SECRET, "i9lyfe", 3600)
    connected = random.Random(7).sample(followers, args.connected)
    sockets = Sockets()
    await sockets.open(h.ws_url(server.base_url), [tokens.issue_access(uid, 1) for uid in connected])
    h.say(f"# {len(connected)} sockets open, per gateway: {sorted(sockets.gateways.values())}")
    rows = []
    rng = random.Random(11)
    watch = sorted(followers)[:200] + rng.sample(followers, 100)
    sample = rng.sample(followers, 200)  # Redis bytes: MEMORY USAGE of their timeline and stream, before and after
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        for n in range(args.posts):
            before = await key_bytes(client, prefix, sample)
            post, started = await upload_and_post(http, author.access_token, f"post {n} #bench")
            acked = time.perf_counter()
            member = f"{int(post['id']):020d}:{post['id']}:{author.id}:0"
            all_at = None
            # Poll the followers fanned out last (the followers index is walked newest follow first; these were
            # all made in one COPY, so lowest id last) and a random sample, every 10 ms; then check them all.
            while time.perf_counter() - started < 60:
                if await holds(client, prefix, watch, member):
                    all_at = time.perf_counter()
                    break
                await asyncio.sleep(0.01)
            everyone = await holds(client, prefix, followers, member)
            await asyncio.sleep(0.3 if args.smoke else 1.0)  # the last sockets' feed.post
            arrivals = sorted(sockets.arrivals.get(post["id"], []))
            after = await key_bytes(client, prefix, sample)
            event = msgpack.packb(
                {"feed_item_id": post["id"], "post_id": post["id"], "author": post["author"], "reposted_by": None}
            )
            lat = [1000 * (t - started) for t in arrivals]
            rows.append(
                [
                    n + 1,
                    f"{1000 * (acked - started):.0f}",
                    "not all" if all_at is None or not everyone else f"{1000 * (all_at - started):.0f}",
                    f"{len(arrivals)} of {len(connected)}",
                    f"{h.percentile(lat, 50):.0f}" if lat else "-",
                    f"{h.percentile(lat, 99):.0f}" if lat else "-",
                    f"{(after - before) / len(sample):.0f}",
                    len(event),
                ]
            )
            h.say(f"# post {n + 1}: {rows[-1]}")
    for task in sockets.tasks:
        task.cancel()
    await client.aclose()
    return rows


async def seed_reads(dsn: str, viewer: int, followees: int, posts: int) -> int:
    conn = await asyncpg.connect(dsn)
    base = entry_id(dt.datetime(2024, 7, 1, tzinfo=dt.UTC), 0)
    authors = await copy_users(conn, base, followees, "au")
    await conn.copy_records_to_table(
        "follows", records=[(viewer, a) for a in authors], columns=["follower_id", "followee_id"]
    )
    await conn.execute("UPDATE users SET following_count = following_count + $2 WHERE id = $1", viewer, followees)
    await conn.execute("UPDATE users SET followers_count = followers_count + 1 WHERE id = ANY($1::bigint[])", authors)
    await copy_posts(conn, authors, posts, dt.datetime.now(dt.UTC) - dt.timedelta(days=30), 1)
    await conn.execute("ANALYZE")
    await conn.close()
    return len(authors)


async def copy_posts(conn: asyncpg.Connection, authors: list[int], n: int, start: dt.datetime, salt: int) -> None:
    rng = random.Random(salt)
    span = (dt.datetime.now(dt.UTC) - start).total_seconds()
    rows = []
    for i in range(n):
        at = start + dt.timedelta(seconds=span * i / n)
        rows.append((entry_id(at, (salt << 16) + i % 65536), rng.choice(authors), "photo", f"bench {i}", at))
    # The feed does not read the search document: the search trigger is off for the bulk COPY (its per-row upkeep
    # makes seeding 1M posts take minutes; benchmarks/seed_search.py builds documents in bulk instead).
    await conn.execute("ALTER TABLE posts DISABLE TRIGGER posts_search_insert")
    try:
        await conn.copy_records_to_table(
            "posts", records=rows, columns=["id", "author_id", "type", "caption", "created_at"]
        )
    finally:
        await conn.execute("ALTER TABLE posts ENABLE TRIGGER posts_search_insert")


def read_rounds(args: argparse.Namespace, server: h.Server, token: str, label: str) -> list[list[Any]]:
    workers = [psutil.Process(pid) for pid in server.worker_pids]
    feed = f"{server.base_url}/api/v1/feed"
    auth = {"Authorization": f"Bearer {token}"}
    if not args.smoke:
        wrk(feed, auth, args.connections, WARMUP_S)
        wrk(server.base_url + "/healthz", {}, args.connections, WARMUP_S)
    rows = []
    for r in range(1, args.rounds + 1):
        health = loaded(workers, server.base_url + "/healthz", {}, args.connections, args.duration)
        res = loaded(workers, feed, auth, args.connections, args.duration)
        rows.append(
            [label, r, f"{health['rps']:.0f}", f"{res['rps']:.0f}", f"{res['rps'] / health['rps']:.2f}",
             f"{res['p50']:.1f}", f"{res['p99']:.1f}", res["non2xx"], f"{res['cpu_us']:.0f}", f"{res['pg_us']:.0f}"]
        )  # fmt: skip
        h.say(f"# {rows[-1]}")
    return rows


async def reads(args: argparse.Namespace, bench: h.Bench, server: h.Server, dsn: str) -> list[list[Any]]:
    viewer = await h.signup(server.base_url, bench.workdir / "var" / "mail", f"viewer{bench.run_id[:6]}")
    await seed_reads(dsn, viewer.id, args.followees, args.posts_small)
    token = viewer.access_token  # a real session: GET /feed checks it in its query
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        page = (await http.get("/api/v1/feed", headers={"Authorization": f"Bearer {token}"})).json()
        assert len(page["items"]) == 20, page
    rows = read_rounds(args, server, token, f"{args.posts_small:,} posts")
    if args.profile:
        feed_url = f"{server.base_url}/api/v1/feed"
        auth = {"Authorization": f"Bearer {token}"}
        for line in profile(bench, server.worker_pids, feed_url, auth, args.connections, args.duration):
            h.say(f"# profile: {line}")
    if args.skip_big:
        return rows
    conn = await asyncpg.connect(dsn)
    total = int(await conn.fetchval("SELECT count(*) FROM posts"))
    others = await copy_users(conn, entry_id(dt.datetime(2024, 8, 1, tzinfo=dt.UTC), 0), 1000, "other")
    await copy_posts(conn, others, args.posts_big - total, dt.datetime.now(dt.UTC) - dt.timedelta(days=60), 2)
    await conn.execute("ANALYZE")
    total = int(await conn.fetchval("SELECT count(*) FROM posts"))
    await conn.close()
    h.say(f"# database now holds {total:,} posts")
    return rows + read_rounds(args, server, token, f"{total:,} posts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--followers", type=int, default=10_000)
    parser.add_argument("--connected", type=int, default=1_000)
    parser.add_argument("--posts", type=int, default=3)
    parser.add_argument("--followees", type=int, default=200)
    parser.add_argument("--posts-small", type=int, default=10_000)
    parser.add_argument("--posts-big", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument("--skip-big", action="store_true", help="measure reads at --posts-small only")
    parser.add_argument("--profile", action="store_true", help="py-spy the workers during one more feed run")
    args = h.parse_args(parser, SMOKE)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install -y wrk)")
    h.raise_nofile()
    with h.Bench("feed", smoke=args.smoke) as bench:
        dsn = bench.database()
        prefix = bench.redis_prefix()
        head = bench.ray_head()
        server = bench.server(
            dsn,
            prefix,
            head,
            {"RATE_LIMITS": "write=1000000/60,auth=1000000/60,ws_connect=1000000/60", "ACCESS_TOKEN_TTL": "3600"},
        )
        if not args.skip_fanout:
            rows = asyncio.run(fanout(args, bench, server, dsn, prefix))
            h.say()
            h.say(
                h.table(
                    ["post", "POST /posts ms", "all timelines ms", "feed.post received", "p50 ms", "p99 ms",
                     "Redis bytes / recipient", "event data bytes"],
                    rows,
                )
            )  # fmt: skip
        read_rows = asyncio.run(reads(args, bench, server, dsn))
        h.say()
        h.say(
            h.table(
                ["data", "round", "healthz req/s", "feed req/s", "ratio", "p50 ms", "p99 ms", "non-2xx",
                 "worker CPU us/req", "postgres CPU us/req"],
                read_rows,
            )
        )  # fmt: skip
        by: dict[str, list[float]] = {}
        for row in read_rows:
            by.setdefault(row[0], []).append(float(row[5]))
        medians = {k: statistics.median(v) for k, v in by.items()}
        labels = list(medians)
        if len(labels) == 2:
            h.say(f"# p50 at {labels[1]} / p50 at {labels[0]}: {medians[labels[1]] / medians[labels[0]]:.2f}")
        for line in h.log_summary(server.log_path):
            h.say(f"# log: {line}")


if __name__ == "__main__":
    main()
