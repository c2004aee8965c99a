"""Recommendations on a synthetic network (issue 14): quality against held-out data, beside a most-popular
baseline, and the latency of GET /explore and GET /suggestions/users through the real server.

Seeds its own database with ``benchmarks/recs_seed.py`` (100k users, 2M follows, 1M posts, ~3M reactions with
planted communities and interests; 10% of follows and reactions held out), refreshes the precomputed tables as the
worker does (timed), then:

- **who-to-follow**: for ``--sample`` users with held-out follows, the app's ranking (storage/graph.py
  ``suggestions`` with api/reads/suggestions.py ``WEIGHTS``, exactly what the route runs) against the most
  followed users they do not follow yet: precision@10 and recall@50 against their held-out follows;
- **explore**: for ``--sample`` users with held-out reactions, the app's ranking (api/reads/explore.py
  ``Explorer.ranking``, as far as a first page of 20 ranks it) against the posts with the most reactions that
  they did not write or react to: hit rate@20 (a user is a hit when one of the top 20 is a post they reacted to in
  the held-out set);
- **latency**: ``python -m api`` (2 workers) loaded by ``wrk`` (1 thread, ``--connections`` 16, then 4) with a
  token of a different user on each request (a Lua script), for GET /explore, GET /suggestions/users and GET
  /healthz of the same server, ``--rounds`` rounds of ``--duration`` seconds: p50/p99 and req/s as a ratio to
  healthz. Each endpoint twice: **new users** (every request from a user no earlier request came from: nothing
  of theirs is kept or cached) and **returning users** (the sampled users in turn, each with a first page in the
  last minute: a ``--warm`` second pass over them just before; explore's kept ranking, api/reads/explore.py).

    apt-get install -y wrk
    .venv/bin/python benchmarks/recs.py [--users 100000] [--follows 2000000] [--posts 1000000] [--sample 1000]
        [--connections 16,4] [--duration 10] [--rounds 3] [--warm 25] [--skip-latency] [--database DSN] [--smoke]

``--database`` reuses a database ``recs_seed.py`` seeded earlier (its held-out sets generated again), so that two
versions of the code are measured on the same data side by side. PostgreSQL CPU per request counts the processes
working for the bench's database only (not other work on this machine).
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
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from actors import recommendations
from api.reads import explore, suggestions
from benchmarks import _harness as h
from benchmarks.posts import wrk
from benchmarks.recs_seed import Network, recover, seed
from domain.tokens import TokenService
from storage import db
from storage import graph as graph_store

WARMUP_S = 2  # wrk on every endpoint before the tables; none at smoke scale
# Every "new users" run takes 600 users per second of wrk that no request came from yet (two runs here).
SMOKE = {
    "users": 1500,
    "follows": 15_000,
    "posts": 4000,
    "sample": 50,
    "connections": "1",
    "duration": 1,
    "rounds": 1,
    "warm": 1,
}
LUA = """
local tokens = {}
for line in io.lines("%s") do tokens[#tokens + 1] = line end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, {["Authorization"] = "Bearer " .. tokens[(n %% #tokens) + 1]})
end
"""


async def who_to_follow(pool: asyncpg.Pool, net: Network, users: list[int]) -> dict[str, float]:
    popular = [int(r["id"]) for r in await pool.fetch("SELECT id FROM users ORDER BY followers_count DESC LIMIT 3000")]
    sums = {"app p@10": 0.0, "app r@50": 0.0, "base p@10": 0.0, "base r@50": 0.0}
    timings = []
    for u in users:
        uid = net.user_ids[u]
        held = {net.user_ids[v] for v in net.held_follows[u]}
        started = time.perf_counter()
        ranked = [int(r["user_id"]) for r in await graph_store.suggestions(pool, uid, suggestions.WEIGHTS, 50)]
        timings.append(time.perf_counter() - started)
        followed = {int(r["followee_id"]) for r in await pool.fetch(
            "SELECT followee_id FROM follows WHERE follower_id = $1", uid)}  # fmt: skip
        base = [p for p in popular if p != uid and p not in followed][:50]
        for name, got in (("app", ranked), ("base", base)):
            sums[f"{name} p@10"] += len(set(got[:10]) & held) / 10
            sums[f"{name} r@50"] += len(set(got[:50]) & held) / len(held)
    out = {k: v / len(users) for k, v in sums.items()}
    out["in-process ms p50"] = 1000 * statistics.median(timings)
    return out


async def explore_quality(pool: asyncpg.Pool, net: Network, users: list[int]) -> dict[str, float]:
    top = await pool.fetch(
        """SELECT post_id, p.author_id FROM post_counts c JOIN posts p ON p.id = c.post_id
           WHERE c.counter = 'reactions' ORDER BY c.n DESC LIMIT 3000"""
    )
    explorer = explore.Explorer(pool, None, None)
    hits = {"app": 0, "base": 0}
    timings = []
    for u in users:
        uid = net.user_ids[u]
        held = net.held_reactions[u]
        started = time.perf_counter()
        ranked, _ = await explorer.ranking(uid, skip_followed=False, want=20)  # as a first page of 20 ranks it
        timings.append(time.perf_counter() - started)
        mine = {int(r["post_id"]) for r in await pool.fetch(
            "SELECT post_id FROM post_reactions WHERE user_id = $1", uid)}  # fmt: skip
        base = [int(r["post_id"]) for r in top if int(r["author_id"]) != uid and int(r["post_id"]) not in mine][:20]
        hits["app"] += bool({r.post_id for r in ranked[:20]} & held)
        hits["base"] += bool(set(base) & held)
    return {
        "app hit@20": hits["app"] / len(users),
        "base hit@20": hits["base"] / len(users),
        "in-process ms p50": 1000 * statistics.median(timings),
    }


class Tokens:
    """Lua scripts for wrk, each with a token per line of its users (requests take them in turn)."""

    def __init__(self, bench: h.Bench, net: Network, returning: list[int]) -> None:
        self.bench = bench
        self.net = net
        self.issuer = TokenService(h.JWT_SECRET, "i9lyfe", 3600)
        self.returning = self.script(returning)
        returning_set = set(returning)
        self.unseen = [u for u in range(net.users) if u not in returning_set]
        random.Random(11).shuffle(self.unseen)

    def script(self, users: list[int]) -> Path:
        n = len(list(self.bench.workdir.glob("tokens-*.txt")))
        token_file = self.bench.workdir / f"tokens-{n}.txt"
        token_file.write_text("\n".join(self.issuer.issue_access(self.net.user_ids[u], 1) for u in users) + "\n")
        script = self.bench.workdir / f"tokens-{n}.lua"
        script.write_text(LUA % token_file)
        return script

    def new_users(self, n: int) -> Path:
        """Users no request has come from yet (each request another one, while ``n`` last)."""
        taken, self.unseen = self.unseen[:n], self.unseen[n:]
        return self.script(taken)


def latency_table(
    urls: dict[str, str],
    tokens: Tokens,
    workers: list[psutil.Process],
    database: str,
    connections: int,
    duration: int,
    rounds: int,
    warm_s: int,
) -> None:
    """Per endpoint and round: new users (every request a user seen by no earlier request: nothing of theirs is
    kept) and returning users (the sampled users in turn, each of whom had a first page within the last minute:
    a pass over all of them just before). PostgreSQL's CPU is that of the processes working for the bench's
    database (``h.postgres_processes``: not other work on this machine)."""
    postgres = h.ProcessGroups({"postgres": lambda: h.postgres_processes(database)})
    runs = [("healthz", "returning")] + [
        (name, who) for name in urls if name != "healthz" for who in ("new", "returning")
    ]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {run: [] for run in runs}
    for r in range(rounds):
        health = 1.0
        for name, who in runs:
            if who == "returning" and name != "healthz":
                wrk(urls[name], {}, connections, warm_s, script=tokens.returning)  # each returning user once
            script = tokens.returning if who == "returning" else tokens.new_users(600 * duration)
            before, pg_before = h.cpu_seconds(workers), postgres.snapshot()
            res = wrk(urls[name], {}, connections, duration, script=script)
            res["cpu_us"] = 1e6 * (h.cpu_seconds(workers) - before) / max(1, res["requests"])
            pg_spent = h.ProcessGroups.spent(pg_before, postgres.snapshot())["postgres"]
            res["pg_us"] = 1e6 * pg_spent / max(1, res["requests"])
            if name == "healthz":
                health = res["rps"]
            res["ratio"] = res["rps"] / health
            results[(name, who)].append(res)
            h.say(
                f"# {connections} connections, round {r + 1} {name} ({who} users): {res['rps']:.0f} req/s,"
                f" p50 {res['p50']:.1f} p99 {res['p99']:.1f} ms"
            )
    rows = []
    for (name, who), done in results.items():
        rows.append(
            [
                name if name == "healthz" else f"{name}, {who} users",
                f"{statistics.median(x['rps'] for x in done):.0f}",
                f"{statistics.median(x['ratio'] for x in done):.3f}",
                f"{statistics.median(x['p50'] for x in done):.1f}",
                f"{statistics.median(x['p99'] for x in done):.1f}",
                sum(x["non2xx"] for x in done),
                f"{statistics.median(x['cpu_us'] for x in done):.0f}",
                f"{statistics.median(x['pg_us'] for x in done):.0f}",
            ]
        )
    h.say()
    h.say(f"wrk, {connections} connections, a token of another user on every request, medians of {rounds}:")
    h.say(h.table(["endpoint", "req/s", "ratio to healthz", "p50 ms", "p99 ms", "non-2xx", "worker CPU us/req",
                   "postgres CPU us/req"], rows))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--follows", type=int, default=2_000_000)
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=1000)
    parser.add_argument("--connections", default="16,4", help="wrk connections, one latency table per value")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm", type=int, default=25, help="seconds of the pass over returning users")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument(
        "--database",
        help="a database recs_seed.py seeded earlier with the same --users/--follows/--posts: used as it is (and kept)"
        " instead of seeding a new one; its held-out sets are generated again (recs_seed.py recover)",
    )
    args = h.parse_args(parser, SMOKE)
    if not args.skip_latency and shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install -y wrk)")
    with h.Bench("recs", smoke=args.smoke) as bench:
        prefix = bench.redis_prefix()
        if args.database:
            dsn = args.database
            net = asyncio.run(recover(dsn, args.users, args.follows, args.posts))
        else:
            dsn = bench.database()
            net = asyncio.run(seed(dsn, args.users, args.follows, args.posts))
        h.say("# seeded: " + ", ".join(f"{k} {v:.0f} s" for k, v in net.seconds.items()))
        h.say(
            f"# {net.users} users, {net.follows} follows, {net.posts} posts, {net.reactions} reactions written; held"
            f" out {sum(map(len, net.held_follows.values()))} follows of {len(net.held_follows)} users and"
            f" {sum(map(len, net.held_reactions.values()))} reactions of {len(net.held_reactions)} users"
        )
        rng = random.Random(7)
        follow_users = rng.sample(sorted(net.held_follows), min(args.sample, len(net.held_follows)))
        react_users = rng.sample(sorted(net.held_reactions), min(args.sample, len(net.held_reactions)))

        async def quality() -> tuple[float, dict[str, float], dict[str, float]]:
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2, server_settings=db.PLANNED_SETTINGS)
            assert pool is not None
            try:
                started = time.perf_counter()
                await recommendations.refresh(pool, every_s=0.001)
                refreshed = time.perf_counter() - started
                await pool.execute("ANALYZE trending_posts, interest_top_posts, interest_top_authors")
                return (
                    refreshed,
                    await who_to_follow(pool, net, follow_users),
                    await explore_quality(pool, net, react_users),
                )
            finally:
                await pool.close()

        refreshed, people, posts = asyncio.run(quality())
        h.say(f"# refresh of trending and per-interest tables: {refreshed:.2f} s")
        h.say()
        h.say(
            h.table(
                ["who-to-follow", "app", "most-popular baseline", "app / baseline"],
                [
                    ["precision@10", f"{people['app p@10']:.4f}", f"{people['base p@10']:.4f}",
                     f"{people['app p@10'] / max(people['base p@10'], 1e-9):.1f}x"],
                    ["recall@50", f"{people['app r@50']:.4f}", f"{people['base r@50']:.4f}",
                     f"{people['app r@50'] / max(people['base r@50'], 1e-9):.1f}x"],
                ],
            )
        )  # fmt: skip
        h.say()
        h.say(
            h.table(
                ["explore", "app", "most-popular baseline", "app / baseline"],
                [["hit rate@20", f"{posts['app hit@20']:.4f}", f"{posts['base hit@20']:.4f}",
                  f"{posts['app hit@20'] / max(posts['base hit@20'], 1e-9):.1f}x"]],
            )
        )  # fmt: skip
        h.say(
            f"# in-process ranking time p50: suggestions {people['in-process ms p50']:.1f} ms, "
            f"explore {posts['in-process ms p50']:.1f} ms ({len(follow_users)} / {len(react_users)} users)"
        )
        if args.skip_latency:
            return
        head = bench.ray_head()
        server = bench.server(dsn, prefix, head, {"ACCESS_TOKEN_TTL": "3600", "RECS_REFRESH_S": "3600"})
        tokens = Tokens(bench, net, sorted(set(follow_users) | set(react_users)))
        workers = [psutil.Process(pid) for pid in server.worker_pids]
        urls = {
            "healthz": server.base_url + "/healthz",
            "GET /explore": server.base_url + "/api/v1/explore?limit=20",
            "GET /suggestions/users": server.base_url + "/api/v1/suggestions/users?limit=20",
        }
        if not args.smoke:
            for url in urls.values():
                wrk(url, {}, 16, WARMUP_S, script=tokens.new_users(2000))  # warm up
        for connections in [int(c) for c in args.connections.split(",")]:
            latency_table(
                urls, tokens, workers, dsn.rsplit("/", 1)[1], connections, args.duration, args.rounds, args.warm
            )
        for line in h.log_summary(server.log_path):
            h.say(f"# log: {line}")


if __name__ == "__main__":
    main()
