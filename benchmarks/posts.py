"""Posts, reactions and comments through the real server: write throughput, one hot post, read ratios.

Starts ``python -m api`` (2 worker processes, log level INFO: one access-log line per request as in production,
``RATE_LIMITS="write=1000000/60,auth=1000000/60"``, ``ACCESS_TOKEN_TTL=3600``) with its own database, Redis prefix
and Ray head (``benchmarks/_harness.py``). One user signs up through the real flow; ``--users`` more are inserted
with its password hash (as tests/api/test_follow.py ``seed_accounts``) and log in over HTTP. The client is one
httpx process on the same machine; every write is closed loop with ``--concurrency`` requests in flight:

- **create**: ``--posts`` photo posts (``POST /api/v1/posts``), each with one 64x64 PNG uploaded beforehand by
  its author (declare, PUT, complete: not timed), a caption mentioning another user and two #hashtags;
- **react**: ``--reactions`` ``PUT /posts/{id}/reaction`` of random (user, post) pairs over those posts, one of
  four emoji (a pair drawn twice replaces its emoji);
- **comment**: ``--comments`` ``POST /posts/{id}/comments`` (text with an @mention) of random users on random posts;
- **hot post**: every one of the ``--users`` users runs ``--ops`` reaction ops in sequence (set one of four emoji,
  so a replace when it already reacted, or with probability 0.2 an undo, ``DELETE /posts/{id}/reaction``), all
  users at once, on ONE post; then the same op sequences with user i on a post of its own (``--users`` posts by
  other users, made untimed beforehand: the same mix of new, replaced, unchanged and undone reactions, spread over
  ``--users`` posts); ``--rounds`` times, alternating. Afterwards the post's counts (``GET /posts/{id}``, and
  the ``post_counts`` shard rows) must equal the ``post_reactions`` rows and the state the client's op sequences
  leave, and every post's counters must equal its rows;
- **reads**: the hot post gets ``--read-comments`` comments, each with an image (a ``comment`` upload) and an
  @mention; then ``wrk`` (1 thread, ``--connections``, keep-alive) loads ``GET /api/v1/posts/{id}`` and
  ``GET /api/v1/posts/{id}/comments?limit=20``, anonymous and with a token, in rounds after a ``GET /healthz`` of
  the same server; ratio = endpoint req/s / that round's healthz req/s (median over ``--read-rounds``), with the
  api workers' CPU per request (user + system, /proc) as in benchmarks/http_reads.py.

- **writes driven by wrk** (``--wrk-writes``, on by default; ``--no-wrk-writes``): so that the client costs
  little, one wrk thread (``--connections``, ``--duration`` s each) sends reactions (a random user, post and one of
  four emoji), comments (with an @mention), photo post creates (a caption with an @mention and two #hashtags; each
  with an upload of its author's made ready beforehand: ``--create-pool``) and follows (a random user follows
  another), each phase right after a ``GET /healthz`` wrk run of the same server (benchmarks/wrk/writes.lua). Per
  phase: req/s, ratio to that healthz, wrk's p50/p99, every status (non-2xx with sample bodies), server CPU per
  write by group, and ``pg_stat_database.xact_commit`` of the bench's database over the phase beside the writes
  (read ``--xact-settle`` s later: PostgreSQL reports an idle backend's commits up to 10 s late; the commits/s of
  the healthz run before it are the server's background and are subtracted).

CPU per write is read per group (benchmarks/_harness.py ``server_cpu_groups``): the api workers, the UserShard and
ChatShard processes (pids from their ping), the postgres processes of the bench's database (its backends and the
processes every database shares; the phase tables' "(machine)" column counts every postgres process, other
sessions' work included), every redis-server on the machine (an upper bound), and "ray system" (every other
process under the Ray head: GCS, raylet, dashboard, idle workers). Server CPU per write = api workers + shards +
postgres + redis; ray system is printed beside it.
``--profile`` adds one more wrk run per read endpoint with ``py-spy record`` (raw, 100 Hz, non-blocking) on both
workers and prints the hottest frames.

    apt-get install -y wrk     # Debian's wrk 4.1; the read load and the wrk writes
    .venv/bin/python benchmarks/posts.py [--users 200] [--posts 200] [--reactions 2000] [--comments 500]
        [--ops 5] [--rounds 2] [--concurrency 64] [--duration 8] [--read-rounds 3] [--connections 64] [--profile]
        [--no-wrk-writes] [--create-pool N] [--xact-settle 10.5] [--smoke]
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
import collections
import io
import random
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]  # no stubs installed
from PIL import Image

from benchmarks import _harness as h

TARGET_RATIO = 0.35
PASSWORD = "correct-Horse-9"  # noqa: S105 (h.signup's test password)
EMOJI = ["👍", "😀", "🔥", "🤔"]
PAGE = 20
WARMUP_S = 2  # wrk on every read endpoint first (imports, pools, caches); none at smoke scale
# The read post needs more comments than a page.
SMOKE = {
    "users": 20,
    "posts": 20,
    "reactions": 40,
    "comments": 20,
    "ops": 2,
    "rounds": 1,
    "concurrency": 8,
    "read_comments": PAGE + 1,
    "duration": 1,
    "read_rounds": 1,
    "connections": 1,
    "xact_settle": 0.5,
}


def noise_png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (64, 64), random.Random(seed).randbytes(64 * 64 * 3)).save(out, "PNG")
    return out.getvalue()


@dataclass
class Account:
    id: int
    username: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def seed_users(http: httpx.AsyncClient, dsn: str, template: h.User, n: int) -> list[Account]:
    conn = await asyncpg.connect(dsn)
    try:
        password_hash = await conn.fetchval("SELECT password_hash FROM users WHERE id = $1", template.id)
        base = random.randrange(1, 10**6) << 22  # ids "minted in early 2024": no server process mints there
        names = [f"pb{os.getpid()}_{i:04d}" for i in range(n)]
        await conn.executemany(
            """INSERT INTO users (id, username, email, name, birthday, password_hash)
               VALUES ($1, $2, $3, $4, '2000-01-31', $5)""",
            [(base + i, name, f"{name}@example.com", name.title(), password_hash) for i, name in enumerate(names)],
        )
    finally:
        await conn.close()
    gate = asyncio.Semaphore(8)

    async def login(i: int, name: str) -> Account:
        async with gate:
            reply = await http.post("/api/v1/auth/login", json={"login": name, "password": PASSWORD})
        assert reply.status_code == 200, reply.text
        return Account(base + i, name, reply.json()["tokens"]["access_token"])

    return list(await asyncio.gather(*(login(i, name) for i, name in enumerate(names))))


async def upload(http: httpx.AsyncClient, user: Account, purpose: str, data: bytes) -> str:
    """Declare, PUT the bytes as ``upload`` says, complete: the media id."""
    made = await http.post(
        "/api/v1/media", json={"purpose": purpose, "content_type": "image/png", "size": len(data)}, headers=user.auth
    )
    assert made.status_code == 201, made.text
    body = made.json()
    sent = await http.request(
        body["upload"]["method"], body["upload"]["url"], content=data, headers=body["upload"]["headers"]
    )
    assert sent.status_code in (200, 204), sent.text
    done = await http.post(f"/api/v1/media/{body['media_id']}/complete", headers=user.auth)
    assert done.status_code == 200, done.text
    return str(done.json()["id"])


@dataclass
class Phase:
    name: str
    ops: int
    seconds: float
    latencies: list[float]
    statuses: collections.Counter[int]
    cpu: dict[str, float]

    def row(self) -> list[Any]:
        lat = sorted(self.latencies)
        return [
            self.name,
            self.ops,
            round(self.ops / self.seconds, 1),
            round(1e3 * h.percentile(lat, 50), 1),
            round(1e3 * h.percentile(lat, 99), 1),
            " ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items())),
            *[round(1e6 * self.cpu[g] / self.ops) for g in ("api workers", "shards", "postgres (machine)")],
        ]

    def cpu_row(self) -> list[Any]:
        return cpu_row(self.name, self.cpu, self.ops)


PHASE_HEADERS = [
    "phase",
    "requests",
    "req/s",
    "p50 ms",
    "p99 ms",
    "statuses",
    "api workers CPU us/req",
    "Ray workers (shards) CPU us/req",
    "postgres CPU us/req (machine)",
]


# Server CPU per write, by group (benchmarks/_harness.py server_cpu_groups): the headline "server" is api workers +
# shards (UserShards and ChatShards, found by their ping) + postgres + redis; "ray system" (GCS, raylet, dashboard,
# idle workers) beside it.
CPU_HEADERS = [
    "phase",
    "writes",
    "server CPU us/write",
    "api workers",
    "UserShards",
    "ChatShards",
    "postgres (this database)",
    "redis (machine)",
    "ray system (not in server)",
]


def cpu_row(name: str, cpu: dict[str, float], ops: int) -> list[Any]:
    per = {g: 1e6 * v / max(1, ops) for g, v in cpu.items()}
    return [
        name,
        ops,
        round(1e6 * h.server_cpu(cpu) / max(1, ops)),
        *[round(per[g]) for g in ("api workers", "UserShards", "ChatShards", "postgres", "redis", "ray system")],
    ]


class Cpu:
    """CPU of the server's process groups (``h.server_cpu_groups``): ``read`` a snapshot before and after, ``spent``
    between them per group, plus "shards" (both kinds)."""

    Snapshot = dict[str, dict[tuple[int, float], float]]

    def __init__(self, server: h.Server, head: Any) -> None:
        self.groups = h.server_cpu_groups(server, head)
        # The phase tables' "(machine)" column: every postgres process, other databases' work included.
        self.groups.groups["postgres (machine)"] = lambda: h.processes_named("postgres")

    def read(self) -> Snapshot:
        return self.groups.snapshot()

    @staticmethod
    def spent(before: Snapshot, after: Snapshot) -> dict[str, float]:
        spent = h.ProcessGroups.spent(before, after)
        spent["shards"] = spent["UserShards"] + spent["ChatShards"]
        return spent


async def closed_loop(
    name: str, cpu: Cpu, jobs: list[Callable[[], Awaitable[httpx.Response]]], concurrency: int, ok: set[int]
) -> Phase:
    """Run every job with ``concurrency`` in flight; each job's latency and status."""
    latencies: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[httpx.Response]]) -> None:
        async with gate:
            started = time.perf_counter()
            reply = await job()
            latencies.append(time.perf_counter() - started)
            statuses[reply.status_code] += 1
            if reply.status_code not in ok:
                h.say(f"# {name}: {reply.status_code} {reply.text[:200]}")

    before = cpu.read()
    started = time.perf_counter()
    await asyncio.gather(*(one(job) for job in jobs))
    seconds = time.perf_counter() - started
    after = cpu.read()
    return Phase(name, len(jobs), seconds, latencies, statuses, cpu.spent(before, after))


async def reaction_storm(
    name: str,
    cpu: Cpu,
    http: httpx.AsyncClient,
    users: list[Account],
    plans: list[list[str | None]],
    target: Callable[[int], int],
    concurrency: int,
    state: dict[tuple[int, int], str | None],
) -> Phase:
    """Each user runs its plan (an emoji to set, or None: undo) in order, all users at once, at most
    ``concurrency`` requests in flight; ``state`` is what the client expects each (user, post) to end at."""
    latencies: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    gate = asyncio.Semaphore(concurrency)

    async def run(i: int, user: Account) -> None:
        post_id = target(i)
        for emoji in plans[i]:
            path = f"/api/v1/posts/{post_id}/reaction"
            async with gate:
                started = time.perf_counter()
                if emoji is None:
                    reply = await http.delete(path, headers=user.auth)
                else:
                    reply = await http.put(path, json={"emoji": emoji}, headers=user.auth)
                latencies.append(time.perf_counter() - started)
            statuses[reply.status_code] += 1
            if reply.status_code not in (200, 204):
                h.say(f"# {name}: {reply.status_code} {reply.text[:200]}")
                continue
            state[(user.id, post_id)] = emoji

    before = cpu.read()
    started = time.perf_counter()
    await asyncio.gather(*(run(i, u) for i, u in enumerate(users)))
    seconds = time.perf_counter() - started
    after = cpu.read()
    ops = sum(len(p) for p in plans)
    return Phase(name, ops, seconds, latencies, statuses, cpu.spent(before, after))


async def verify(
    dsn: str, http: httpx.AsyncClient, hot: int, state: dict[tuple[int, int], str | None]
) -> tuple[list[list[Any]], bool]:
    """The hot post's counts (API and shard rows) against its rows and the client's expected state; every post's
    counters against its rows."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = {
            r["emoji"]: int(r["n"])
            for r in await conn.fetch(
                "SELECT emoji, count(*) AS n FROM post_reactions WHERE post_id = $1 GROUP BY 1", hot
            )
        }
        shards = await conn.fetch(
            """SELECT counter, sum(n)::bigint AS n, count(*) AS shard_rows FROM post_counts
               WHERE post_id = $1 GROUP BY 1""",
            hot,
        )
        mismatched = await conn.fetchval(
            """WITH r AS (SELECT post_id, count(*) AS n FROM post_reactions GROUP BY 1),
                    c AS (SELECT post_id, sum(n) AS n FROM post_counts WHERE counter = 'reactions' GROUP BY 1)
               SELECT count(*) FROM posts p LEFT JOIN r ON r.post_id = p.id LEFT JOIN c ON c.post_id = p.id
               WHERE coalesce(r.n, 0) <> coalesce(c.n, 0)"""
        )
        emoji_mismatched = await conn.fetchval(
            """WITH r AS (SELECT post_id, 'emoji:' || emoji AS counter, count(*) AS n FROM post_reactions
                          GROUP BY 1, 2),
                    c AS (SELECT post_id, counter, sum(n) AS n FROM post_counts WHERE counter LIKE 'emoji:%'
                          GROUP BY 1, 2)
               SELECT count(*) FROM r FULL JOIN c USING (post_id, counter) WHERE coalesce(r.n, 0) <> coalesce(c.n, 0)"""
        )
        posts = await conn.fetchval("SELECT count(*) FROM posts")
        all_rows = await conn.fetchval("SELECT count(*) FROM post_reactions")
    finally:
        await conn.close()
    api = (await http.get(f"/api/v1/posts/{hot}")).json()
    expected_hot = collections.Counter(e for (_, pid), e in state.items() if pid == hot and e is not None)
    expected_all = sum(1 for e in state.values() if e is not None)
    shard_counts = {r["counter"]: int(r["n"]) for r in shards}
    shard_rows = {r["counter"]: int(r["shard_rows"]) for r in shards}
    summary_rows = dict(sorted(rows.items()))
    checks = [
        ["hot post: reactions (API counts)", api["counts"]["reactions"], sum(rows.values())],
        ["hot post: reactions (sum of shard rows)", shard_counts.get("reactions", 0), sum(rows.values())],
        ["hot post: reactions the client's ops leave", sum(expected_hot.values()), sum(rows.values())],
        ["hot post: reactions_summary (API)", dict(sorted(api["reactions_summary"].items())), summary_rows],
        ["hot post: summary the client's ops leave", dict(sorted(expected_hot.items())), summary_rows],
        ["hot post: counter shard rows in use (reactions)", shard_rows.get("reactions", 0), "<= 8"],
        ["all posts: reaction rows the client's ops leave", expected_all, all_rows],
        [f"posts ({posts}) whose reactions counter != rows", mismatched, 0],
        ["(post, emoji) counters != rows", emoji_mismatched, 0],
    ]
    ok = all(str(a) == str(b) for name, a, b in checks if not name.startswith("hot post: counter shard"))
    ok = ok and shard_rows.get("reactions", 0) <= 8
    return [[name, a, b, "yes" if (str(a) == str(b) or b == "<= 8") else "NO"] for name, a, b in checks], ok


# ---------------------------------------------------------------- reads (as benchmarks/graph_reads.py)

WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
WRK_ERRORS = re.compile(r"Socket errors:(.*)")
WRK_TOTAL = re.compile(r"(\d+) requests in")
WRK_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
WRK_STATUS = re.compile(r"^STATUS (\d+) (\d+)$", re.MULTILINE)
WRK_SAMPLE = re.compile(r"^SAMPLE (.*)$", re.MULTILINE)


def wrk(
    url: str,
    headers: dict[str, str],
    connections: int,
    duration: int,
    *,
    script: Path | None = None,
    script_args: list[str] | None = None,
    timeout_s: int = 2,
) -> dict[str, Any]:
    """One wrk run (1 thread, keep-alive), with a Lua ``script`` when given (e.g. a token per request) and its
    arguments; a request slower than ``timeout_s`` is a socket error (timeout) and has no latency. A script that
    prints ``STATUS <code> <n>`` and ``SAMPLE <code> <body>`` lines (benchmarks/wrk/writes.lua) has them in
    ``statuses`` and ``samples``."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", f"--timeout={timeout_s}s", "--latency"]
    cmd += ["-s", str(script)] if script else []
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    cmd += [url, *(["--", *script_args] if script_args else [])]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=duration + 60).stdout
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
        "statuses": {int(code): int(n) for code, n in WRK_STATUS.findall(out)},
        "samples": WRK_SAMPLE.findall(out),
    }


def loaded(
    workers: list[psutil.Process], url: str, headers: dict[str, str], connections: int, duration: int
) -> dict[str, Any]:
    """wrk against ``url``, with the api workers' CPU seconds spent meanwhile (per request, in microseconds), and
    every postgres process's on the machine (shared with other work: an upper bound; listed at both ends, so that a
    backend of another session that ends meanwhile takes nothing off)."""
    postgres = h.ProcessGroups({"postgres": lambda: h.processes_named("postgres")})
    before, pg_before = h.cpu_seconds(workers), postgres.snapshot()
    result = wrk(url, headers, connections, duration)
    spent = h.cpu_seconds(workers) - before
    pg_spent = h.ProcessGroups.spent(pg_before, postgres.snapshot())["postgres"]
    result["cpu_us"] = 1e6 * spent / max(1, result["requests"])
    result["pg_us"] = 1e6 * pg_spent / max(1, result["requests"])
    return result


def record(
    bench: h.Bench, pids: list[int], duration: int, *, native: bool = False
) -> tuple[list[subprocess.Popen[bytes]], list[Path]]:
    """``py-spy record`` (raw, 100 Hz, non-blocking; ``native``: with C/C++ frames) on each of ``pids`` for
    ``duration`` seconds, started now; wait for the processes, then ``summarize`` the outputs."""
    spy = str(Path(h.PYTHON).parent / "py-spy")
    outs = [bench.workdir / f"profile-{pid}-{time.monotonic_ns()}.txt" for pid in pids]
    procs = [
        subprocess.Popen(
            [
                spy,
                "record",
                *(["--native"] if native else ["--nonblocking"]),
                "--full-filenames",
                "-r",
                "100",
                "-d",
                str(duration),
                "-f",
                "raw",
                "-o",
                str(out),
                "--pid",
                str(pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, out in zip(pids, outs, strict=True)
    ]
    return procs, outs


def profile(
    bench: h.Bench, pids: list[int], url: str, headers: dict[str, str], connections: int, duration: int
) -> list[str]:
    """One more wrk run with ``py-spy record`` on every worker; the frames with the most samples (inclusive)."""
    procs, outs = record(bench, pids, duration)
    wrk(url, headers, connections, duration)
    for proc in procs:
        proc.wait(timeout=duration + 30)
    return summarize(outs)


def summarize(outs: list[Path], top: int = 25) -> list[str]:
    """The frames of py-spy's raw outputs with the most samples: the repository's own, inclusive, and the leaves."""
    inclusive: collections.Counter[str] = collections.Counter()  # frames of the repository's own code
    leaf: collections.Counter[str] = collections.Counter()  # where the samples were (self time)
    total = 0
    repo = str(h.REPO) + "/"
    for out in outs:
        if not out.exists():
            continue
        for line in out.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            leaf[_short(frames[-1])] += n
            for frame in {f for f in frames if repo in f}:
                inclusive[_short(frame)] += n
    if not total:
        return ["no samples (py-spy needs ptrace rights)"]
    lines = [f"{total} samples; repository frames, inclusive:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["self (leaf frames):"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in leaf.most_common(top)]
    return lines


def _short(frame: str) -> str:
    """``func (/long/path/pkg/mod.py:12)`` -> ``func (pkg/mod.py:12)``."""
    return re.sub(r"\((?:[^()]*/)?([^/()]+/[^/()]+:\d+)\)", r"(\1)", frame)


async def prepare_read_post(http: httpx.AsyncClient, users: list[Account], hot: int, n: int) -> None:
    """``n`` comments on the hot post from distinct users, each with an image and an @mention."""
    gate = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        user, other = users[i % len(users)], users[(i + 7) % len(users)]
        async with gate:
            media = await upload(http, user, "comment", noise_png(10_000 + i))
            body = {"text": f"comment {i} for @{other.username} nice", "media_id": media}
            reply = await http.post(f"/api/v1/posts/{hot}/comments", json=body, headers=user.auth)
        assert reply.status_code == 201, reply.text

    await asyncio.gather(*(one(i) for i in range(n)))


def check_reads(base_url: str, hot: int, token: str) -> None:
    """The loaded requests are the real thing: 200 and full bodies."""
    post = httpx.get(f"{base_url}/api/v1/posts/{hot}", timeout=30).json()
    assert post["media"] and post["mentions"] and post["hashtags"] and post["counts"]["comments"] >= PAGE, post
    page = httpx.get(
        f"{base_url}/api/v1/posts/{hot}/comments?limit={PAGE}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ).json()
    assert len(page["items"]) == PAGE and page["next_cursor"], page
    assert all(c["media"] and c["mentions"] for c in page["items"]), page["items"][0]


async def writes(args: argparse.Namespace, server: h.Server, head: Any, dsn: str) -> tuple[list[Account], int]:
    # Idle connections are dropped after 2 s, before uvicorn's 5 s keep-alive timeout closes them under a request.
    limits = httpx.Limits(
        max_connections=args.concurrency + 8, max_keepalive_connections=args.concurrency + 8, keepalive_expiry=2.0
    )
    async with httpx.AsyncClient(base_url=server.base_url, timeout=120, limits=limits) as http:
        template = await h.signup(server.base_url, Path(server.env["VAR_DIR"]) / "mail", f"pb{os.getpid()}")
        started = time.perf_counter()
        users = await seed_users(http, dsn, template, args.users)
        h.say(f"# {len(users)} users seeded and logged in in {time.perf_counter() - started:.1f} s")
        n = len(users)

        started = time.perf_counter()
        gate = asyncio.Semaphore(16)

        async def pre(i: int) -> str:
            async with gate:
                return await upload(http, images_by(i), "post", noise_png(i))

        def images_by(i: int) -> Account:  # the create phase's authors, the spread posts' authors, user 0
            return (
                users[i % n] if i < args.posts else users[(i - args.posts + 1) % n] if i < args.posts + n else users[0]
            )

        images = await asyncio.gather(*(pre(i) for i in range(args.posts + n + 1)))
        h.say(f"# {len(images)} post images uploaded (not timed) in {time.perf_counter() - started:.1f} s")
        cpu = Cpu(server, head)
        rng = random.Random(11)
        phases: list[Phase] = []

        def create_job(i: int) -> Callable[[], Awaitable[httpx.Response]]:
            author, other = users[i % n], users[(i * 7 + 3) % n]
            body = {
                "type": "photo",
                "caption": f"post {i} with @{other.username} #bench #tag{i % 10}",
                "media_ids": [images[i]],
            }
            return lambda: http.post("/api/v1/posts", json=body, headers=author.auth)

        created: list[int] = []
        jobs = [create_job(i) for i in range(args.posts)]
        phase = await closed_loop("create photo post", cpu, jobs, args.concurrency, {201})
        phases.append(phase)
        conn = await asyncpg.connect(dsn)
        try:
            created = [int(r["id"]) for r in await conn.fetch("SELECT id FROM posts ORDER BY id")]
        finally:
            await conn.close()
        assert len(created) == args.posts, (len(created), args.posts)

        async def spread_post(i: int) -> int:  # user i's post of the spread phase, by user i + 1 (not timed)
            body = {"type": "photo", "caption": f"spread {i} #bench", "media_ids": [images[args.posts + i]]}
            async with gate:
                made = await http.post("/api/v1/posts", json=body, headers=users[(i + 1) % n].auth)
            assert made.status_code == 201, made.text
            return int(made.json()["id"])

        spread = await asyncio.gather(*(spread_post(i) for i in range(n)))

        def react_job() -> Callable[[], Awaitable[httpx.Response]]:
            user, post, emoji = rng.choice(users), rng.choice(created), rng.choice(EMOJI)
            return lambda: http.put(f"/api/v1/posts/{post}/reaction", json={"emoji": emoji}, headers=user.auth)

        phases.append(
            await closed_loop(
                "react (random user, post)", cpu, [react_job() for _ in range(args.reactions)], args.concurrency, {200}
            )
        )

        def comment_job(i: int) -> Callable[[], Awaitable[httpx.Response]]:
            user, other, post = rng.choice(users), rng.choice(users), rng.choice(created)
            body = {"text": f"comment {i} for @{other.username}"}
            return lambda: http.post(f"/api/v1/posts/{post}/comments", json=body, headers=user.auth)

        phases.append(
            await closed_loop(
                "comment (random user, post)",
                cpu,
                [comment_job(i) for i in range(args.comments)],
                args.concurrency,
                {201},
            )
        )

        # The hot post: made by user 0 from the spare image, with a mention and hashtags (it is the read post too).
        body = {"type": "photo", "caption": f"the hot one @{users[1].username} #bench #hot", "media_ids": [images[-1]]}
        made = await http.post("/api/v1/posts", json=body, headers=users[0].auth)
        assert made.status_code == 201, made.text
        hot = int(made.json()["id"])
        state: dict[tuple[int, int], str | None] = {}
        conn = await asyncpg.connect(dsn)  # the state the react phase left: the storms start from it
        try:
            for r in await conn.fetch("SELECT user_id, post_id, emoji FROM post_reactions"):
                state[(int(r["user_id"]), int(r["post_id"]))] = r["emoji"]
        finally:
            await conn.close()
        storms: list[Phase] = []
        for r in range(1, args.rounds + 1):
            plan_rng = random.Random(100 + r)
            plans = [
                [None if plan_rng.random() < 0.2 else plan_rng.choice(EMOJI) for _ in range(args.ops)] for _ in users
            ]
            storms.append(
                await reaction_storm(
                    f"round {r}: {n} users on ONE post",
                    cpu,
                    http,
                    users,
                    plans,
                    lambda _i: hot,
                    args.concurrency,
                    state,
                )
            )
            storms.append(
                await reaction_storm(
                    f"round {r}: {n} users, each on its own post",
                    cpu,
                    http,
                    users,
                    plans,
                    lambda i: spread[i],
                    args.concurrency,
                    state,
                )
            )
        h.say()
        h.say(h.table(PHASE_HEADERS, [p.row() for p in phases]))
        h.say()
        h.say(f"hot post vs spread: every user's ops in sequence, all {n} users at once, {args.concurrency} in flight")
        h.say(h.table(PHASE_HEADERS, [p.row() for p in storms]))
        hot_rates = [s.ops / s.seconds for s in storms[0::2]]
        spread_rates = [s.ops / s.seconds for s in storms[1::2]]
        h.say(
            "hot/spread reactions/s per round: "
            + ", ".join(f"{a / b:.2f}" for a, b in zip(hot_rates, spread_rates, strict=True))
        )
        h.say()
        h.say("Server CPU per write, us (server = api workers + shards + postgres + redis; ray system beside it):")
        h.say(h.table(CPU_HEADERS, [p.cpu_row() for p in phases + storms]))
        checks, ok = await verify(dsn, http, hot, state)
        h.say()
        h.say(h.table(["check", "found", "expected (rows)", "equal"], checks))
        h.say(f"counts equal the rows: {'yes' if ok else 'NO'}")
        if args.profile_writes:  # after the check: the profiled reactions are not in the client's state
            await profile_writes(args, server, head, http, users, created)
        if args.wrk_writes:
            await wrk_writes(args, server, head, dsn, users, created, int(images[0]))

        started = time.perf_counter()
        await prepare_read_post(http, users, hot, args.read_comments)
        h.say(
            f"# {args.read_comments} comments with images and mentions on the read post"
            f" in {time.perf_counter() - started:.1f} s"
        )
        return users, hot


# ---------------------------------------------------------------- writes driven by wrk

WRK_WRITES = Path(__file__).resolve().parent / "wrk" / "writes.lua"
# (benchmarks/wrk/writes.lua mode, what it sends). Creates before follows: a post's fan-out then reaches as few
# followers as in the closed-loop create phase (none).
WRITE_MODES = [
    ("reaction", "PUT /posts/{id}/reaction"),
    ("comment", "POST /posts/{id}/comments"),
    ("create", "POST /posts (photo)"),
    ("follow", "PUT /users/{username}/follow"),
]
CREATES_PER_S = 1000  # the create pool holds this many uploads per second of --duration (default --create-pool)
IN_FLIGHT_S = 0.3  # after wrk stops: the answers still in flight finish before the CPU is read
TARGET_CPU_MS = 4.0  # issue 21: server CPU per write
TARGET_REACTION_RATIO = 0.1  # issue 21: reaction throughput against /healthz of the same server


async def seed_media(dsn: str, template_id: int, owners: list[int]) -> list[int]:
    """Ready, private post images owned by ``owners`` (one each, in order), copied from a real upload's row (the
    same object in storage): an upload belongs to one post, and uploading thousands through the API would take
    longer than the phase that uses them. Their ids, in order."""
    base = random.randrange(1, 10**6) << 22  # ids "minted in early 2024": no server process mints there
    conn = await asyncpg.connect(dsn)
    try:
        template = await conn.fetchrow("SELECT * FROM media WHERE id = $1", template_id)
        assert template is not None and template["state"] == "ready", template
        columns = list(template.keys())
        records = []
        for i, owner in enumerate(owners):
            values = {**dict(template), "id": base + i, "owner_id": owner, "public": False}
            records.append(tuple(values[c] for c in columns))
        await conn.copy_records_to_table("media", records=records, columns=columns)
    finally:
        await conn.close()
    return [base + i for i in range(len(owners))]


async def xact_commits(conn: asyncpg.Connection) -> int:
    """``pg_stat_database.xact_commit`` of the bench's database. PostgreSQL 15 backends report their counts at most
    once a second while busy, and up to 10 s after they went idle: read it ``--xact-settle`` s after a load."""
    return int(await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"))


async def wrk_writes(
    args: argparse.Namespace,
    server: h.Server,
    head: Any,
    dsn: str,
    users: list[Account],
    posts: list[int],
    template_media: int,
) -> None:
    """``--wrk-writes``: each write of ``WRITE_MODES`` for ``--duration`` s at ``--connections`` from one wrk thread
    (benchmarks/wrk/writes.lua: random users, posts, emoji and followees), right after a ``GET /healthz`` wrk run
    of the same server. Per phase: req/s and its ratio to that healthz, wrk's p50/p99, every status, server CPU
    per write by group, and the database's commits (``pg_stat_database.xact_commit``) beside the writes."""
    bench: h.Bench = args.bench
    rng = random.Random(17)
    pool_size = args.create_pool or max(100, CREATES_PER_S * args.duration)
    authors = [rng.randrange(len(users)) for _ in range(pool_size)]
    media = await seed_media(dsn, template_media, [users[k].id for k in authors])
    data = bench.workdir / "wrk-writes.tsv"
    lines = [f"u\t{u.token}\t{u.username}" for u in users]
    lines += [f"p\t{post}" for post in posts]
    lines += [f"m\t{k + 1}\t{m}" for k, m in zip(authors, media, strict=True)]
    data.write_text("\n".join(lines) + "\n")
    h.say(
        f"# wrk writes: {len(users)} users, {len(posts)} posts, a create pool of {pool_size:,} uploads; "
        f"{args.duration} s per phase at {args.connections} connections, each after {args.duration} s of /healthz"
    )
    cpu = Cpu(server, head)
    conn = await asyncpg.connect(dsn)
    rows, cpu_rows, commit_rows, notes = [], [], [], []
    try:
        await asyncio.sleep(args.xact_settle)  # the closed-loop phases' commits are all counted before we start
        for k, (mode, label) in enumerate(WRITE_MODES):
            x0 = await xact_commits(conn)
            began = time.perf_counter()
            health = await asyncio.to_thread(wrk, server.base_url + "/healthz", {}, args.connections, args.duration)
            x1 = await xact_commits(conn)
            background_rate = (x1 - x0) / (time.perf_counter() - began)  # commits/s of the server with no writes
            before = cpu.read()
            began = time.perf_counter()
            res = await asyncio.to_thread(
                wrk,
                server.base_url,
                {},
                args.connections,
                args.duration,
                script=WRK_WRITES,
                script_args=[mode, str(data), str(100 + k)],
                timeout_s=30,
            )
            await asyncio.sleep(IN_FLIGHT_S)
            after = cpu.read()
            await asyncio.sleep(args.xact_settle)
            x2 = await xact_commits(conn)
            span = time.perf_counter() - began
            writes = res["requests"]
            spent = cpu.spent(before, after)
            commits = x2 - x1
            background = background_rate * span
            net = commits - background
            rows.append(
                [
                    label,
                    writes,
                    res["rps"],
                    health["rps"],
                    round(res["rps"] / health["rps"], 4) if health["rps"] else float("nan"),
                    res["p50"],
                    res["p99"],
                    res["non2xx"],
                    res["socket_errors"] or "none",
                ]
            )
            cpu_rows.append(cpu_row(f"wrk {mode}", spent, writes))
            commit_rows.append(
                [label, writes, commits, round(background_rate, 1), round(background), round(net), net / max(1, writes)]
            )
            statuses = ", ".join(f"{code}: {n:,}" for code, n in sorted(res["statuses"].items()))
            notes.append(f"{label}: statuses {statuses or 'none'}")
            for sample in res["samples"]:
                notes.append(f"    non-2xx: {sample}")
            if mode == "create" and writes > pool_size:
                notes.append(f"    {writes - pool_size:,} creates past the pool of {pool_size:,}: 422 invalid_media")
            h.say(
                f"# wrk {mode}: {res['rps']:.0f} req/s (healthz {health['rps']:.0f}), "
                f"{1e3 * h.server_cpu(spent) / max(1, writes):.2f} ms server CPU per write, "
                f"{commits} commits for {writes} writes"
            )
    finally:
        await conn.close()
    h.say()
    h.say(
        f"HTTP writes driven by wrk (1 thread, {args.connections} connections, {args.duration} s each, "
        "right after /healthz of the same server):"
    )
    h.say(
        h.table(
            [
                "write",
                "requests",
                "req/s",
                "healthz req/s",
                "ratio to healthz",
                "p50 ms",
                "p99 ms",
                "non-2xx",
                "socket errors",
            ],
            rows,
        )
    )
    h.say()
    h.say("Server CPU per write under wrk, us (server = api workers + shards + postgres + redis; ray system beside):")
    h.say(h.table(CPU_HEADERS, cpu_rows))
    h.say()
    h.say(
        f"PostgreSQL commits (pg_stat_database.xact_commit of the bench's database, read {args.xact_settle:g} s "
        "after the phase; background = the commits/s of the healthz run before it x the phase's span):"
    )
    h.say(
        h.table(
            [
                "write",
                "writes",
                "xact_commit delta",
                "background commits/s",
                "background in span",
                "commits net",
                "commits per write",
            ],
            commit_rows,
        )
    )
    for line in notes:
        h.say(line)
    h.say(
        "non-2xx expected: none (create: 422 invalid_media only past the end of its pool). "
        f"Targets (issue 21): server CPU per write <= {TARGET_CPU_MS:g} ms; reaction req/s >= "
        f"{TARGET_REACTION_RATIO:g}x healthz; commits < writes at {args.connections} in flight"
    )


async def profile_writes(
    args: argparse.Namespace,
    server: h.Server,
    head: Any,
    http: httpx.AsyncClient,
    users: list[Account],
    posts: list[int],
) -> None:
    """``--profile-writes S``: S seconds of random reactions, ``--concurrency`` in flight, with ``py-spy record`` on
    the api workers and on the Ray workers (the shards); the frames with the most samples, per group."""
    bench: h.Bench = args.bench
    rng = random.Random(13)
    shards = h.shard_pids(server.base_url)
    groups = {
        "api workers": list(server.worker_pids),
        "shards (UserShards, ChatShards)": shards["user"] + shards["chat"],
    }
    recorded = {name: record(bench, pids, args.profile_writes, native=args.native) for name, pids in groups.items()}
    deadline = time.monotonic() + args.profile_writes
    done = 0

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            user, post, emoji = rng.choice(users), rng.choice(posts), rng.choice(EMOJI)
            await http.put(f"/api/v1/posts/{post}/reaction", json={"emoji": emoji}, headers=user.auth)
            done += 1

    await asyncio.gather(*(loop() for _ in range(args.concurrency)))
    h.say(f"# profiled writes: {done} reactions in {args.profile_writes} s")
    for name, (procs, outs) in recorded.items():
        for proc in procs:
            proc.wait(timeout=args.profile_writes + 60)
        h.say(f"## profile of the {name} under reactions")
        for line in summarize(outs, top=30):
            h.say(line)


def reads(args: argparse.Namespace, bench: h.Bench, server: h.Server, viewer: Account, hot: int) -> None:
    check_reads(server.base_url, hot, viewer.token)
    base = server.base_url
    auth = viewer.auth
    endpoints = [
        ("post, anonymous", f"{base}/api/v1/posts/{hot}", {}),
        ("post, token", f"{base}/api/v1/posts/{hot}", auth),
        (f"comments?limit={PAGE}, anonymous", f"{base}/api/v1/posts/{hot}/comments?limit={PAGE}", {}),
        (f"comments?limit={PAGE}, token", f"{base}/api/v1/posts/{hot}/comments?limit={PAGE}", auth),
    ]
    workers = [psutil.Process(pid) for pid in server.worker_pids]
    health_url = base + "/healthz"
    if not args.smoke:
        wrk(health_url, {}, args.connections, WARMUP_S)  # warm every path (imports, pools, caches)
        for _, url, headers in endpoints:
            wrk(url, headers, args.connections, WARMUP_S)
    rows = []
    results: dict[str, list[dict[str, Any]]] = {"healthz": [], **{name: [] for name, _, _ in endpoints}}
    for r in range(1, args.read_rounds + 1):
        health = loaded(workers, health_url, {}, args.connections, args.duration)
        health["ratio"] = health["cpu_ratio"] = 1.0
        results["healthz"].append(health)
        rows.append(_row(r, "healthz", health))
        for name, url, headers in endpoints:
            res = loaded(workers, url, headers, args.connections, args.duration)
            res["ratio"] = res["rps"] / health["rps"]
            res["cpu_ratio"] = health["cpu_us"] / res["cpu_us"]
            results[name].append(res)
            rows.append(_row(r, name, res))
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
                "postgres CPU us/req (machine)",
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
                round(statistics.median(res["pg_us"] for res in runs)),
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
                "postgres CPU us/req median",
                "CPU quotient healthz/endpoint median",
            ],
            summary,
        )
    )
    h.say(f"target: ratio >= {TARGET_RATIO}")
    if args.profile:
        for name, url, headers in endpoints[1::2]:
            h.say()
            h.say(f"py-spy record of both workers under wrk, {name} (inclusive share of samples):")
            for line in profile(bench, server.worker_pids, url, headers, args.connections, args.duration):
                h.say("    " + line)


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
        round(res["pg_us"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--reactions", type=int, default=2000)
    parser.add_argument("--comments", type=int, default=500)
    parser.add_argument("--ops", type=int, default=5, help="reaction ops per user per hot/spread phase")
    parser.add_argument("--rounds", type=int, default=2, help="hot/spread pairs")
    parser.add_argument("--concurrency", type=int, default=64, help="write requests in flight")
    parser.add_argument("--read-comments", type=int, default=25)
    parser.add_argument("--duration", type=int, default=8, help="seconds of wrk per read measurement")
    parser.add_argument("--read-rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--profile", action="store_true", help="py-spy record the workers under each read")
    parser.add_argument(
        "--profile-writes", type=int, default=0, metavar="S", help="S s of reactions under py-spy (api and shards)"
    )
    parser.add_argument("--native", action="store_true", help="with --profile-writes: py-spy --native (C frames)")
    parser.add_argument("--skip-reads", action="store_true", help="stop after the writes")
    parser.add_argument(
        "--wrk-writes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reaction, comment, create and follow driven by wrk, --duration s each at --connections (default: on)",
    )
    parser.add_argument(
        "--create-pool",
        type=int,
        default=0,
        help=f"uploads made ready for the wrk creates, one per post (default {CREATES_PER_S} per s of --duration)",
    )
    parser.add_argument(
        "--xact-settle",
        type=float,
        default=10.5,
        help="seconds after a wrk write phase before reading xact_commit (idle backends report within 10 s)",
    )
    args = h.parse_args(parser, SMOKE)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install -y wrk)")

    with h.Bench("posts", smoke=args.smoke) as bench:
        dsn = bench.database()
        prefix = bench.redis_prefix()
        head = bench.ray_head(num_cpus=2)
        extra = {"LOG_LEVEL": "INFO", "ACCESS_TOKEN_TTL": "3600", "RATE_LIMITS": "write=1000000/60,auth=1000000/60"}
        server = bench.server(dsn, prefix, head, extra)
        args.bench = bench
        h.say(f"# api workers {server.worker_pids}; writes: one httpx client process; reads: 1 wrk process, 1 thread")
        users, hot = asyncio.run(writes(args, server, head, dsn))
        if not args.skip_reads:
            reads(args, bench, server, users[0], hot)
        for line in h.log_summary(server.log_path):
            h.say(f"# server log: {line}")


if __name__ == "__main__":
    main()
