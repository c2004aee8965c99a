"""Every benchmark in benchmarks/ still runs: each at smoke scale (``--smoke``: the same code paths at a tiny
scale, in seconds), as a subprocess from the repository root, must exit 0 and print its tables, each found by its
exact header and the row labels that name its rows. The figures of a smoke run are not measurements; nothing here
reads them. The seeders (graph_seed, recs_seed, seed_search) run inside the benchmarks that use them.

Each benchmark starts and stops its own database, Redis prefix, Ray head or cluster and server
(benchmarks/_harness.py ``Bench``); two run at a time (``smoke_runs``). A run past its time is sent SIGTERM, which
``Bench`` turns into its cleanup, and only then killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from actors.runtime.cluster import loopback_env

REPO = Path(__file__).resolve().parents[2]
AT_ONCE = 2  # smoke runs at the same time (smoke_runs)
RUN_TIMEOUT_S = 120  # a smoke run takes 10-40 s on this 2-core machine; a server that never gets ready, 120
CLEANUP_TIMEOUT_S = 45  # after SIGTERM: Bench stops the server, the Ray head, drops the database


@dataclass(frozen=True)
class Table:
    """A Markdown table a benchmark prints: its header cells (all of them, or the first ones when ``prefix``,
    for headers that name process ids) and cells that must be among its rows (row labels)."""

    header: tuple[str, ...]
    labels: tuple[str, ...] = ()
    prefix: bool = False


SEARCHES = (
    "healthz",
    "posts: a frequent word",
    "posts: a rare word",
    "posts: two words",
    "posts: a misspelled word",
    "posts: #tag",
    "posts: from: + word",
    "users: 3-letter prefix",
    "users: misspelled name",
    "hashtags: 2-letter prefix",
)
POSTS_PHASE = (
    "phase",
    "requests",
    "req/s",
    "p50 ms",
    "p99 ms",
    "statuses",
    "api workers CPU us/req",
    "Ray workers (shards) CPU us/req",
    "postgres CPU us/req (machine)",
)
POST_READS = ("healthz", "post, anonymous", "post, token", "comments?limit=20, anonymous", "comments?limit=20, token")
GRAPH_READS = (
    "healthz",
    "profile, anonymous",
    "profile, token",
    "followers page 1, anonymous",
    "followers page 1, token",
    "following page 1, token",
)
CHAT_CPU = (
    "client (senders)",
    "client (receivers)",
    "api workers",
    "ChatShards",
    "UserShards",
    "ray other",
    "postgres",
    "redis",
)

# benchmark (and any flags after --smoke) -> the tables it prints, in any order. Longest runs first: the tests run
# (and the runs start) in this order, two at a time.
BENCHMARKS: dict[str, tuple[Table, ...]] = {
    "chat_latency": (
        Table(
            (
                "chats",
                "messages",
                "sender sockets",
                "achieved/s",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "ack p50 ms",
                "ack p99 ms",
                "lost",
                "out of order / gaps",
                "backlog drain s",
            ),
            ("one chat", "many chats"),
        ),
        Table(
            (
                "path",
                "chats",
                "in flight",
                "messages",
                "messages/s",
                "call p50 ms",
                "call p99 ms",
                "send->peer socket p99 ms",
                "outcomes",
                "check",
            ),
            ("HTTP via the api", "ShardClient -> ChatShard (no HTTP)", "one chat", "many chats"),
        ),
        Table(("phase", *CHAT_CPU, "server total", "server cores"), ("http one chat", "shard many chats")),
        Table(("phase", *CHAT_CPU, "server total"), ("http one chat", "shard many chats")),
    ),
    "recs": (
        Table(("who-to-follow", "app", "most-popular baseline", "app / baseline"), ("precision@10", "recall@50")),
        Table(("explore", "app", "most-popular baseline", "app / baseline"), ("hit rate@20",)),
        Table(
            (
                "endpoint",
                "req/s",
                "ratio to healthz",
                "p50 ms",
                "p99 ms",
                "non-2xx",
                "worker CPU us/req",
                "postgres CPU us/req",
            ),
            (
                "healthz",
                "GET /explore, new users",
                "GET /explore, returning users",
                "GET /suggestions/users, new users",
                "GET /suggestions/users, returning users",
            ),
        ),
    ),
    "search": (
        Table(
            (
                "search",
                "req/s",
                "ratio to healthz (min-max)",
                "p50 ms",
                "p99 ms",
                "non-2xx",
                "worker CPU us/req",
                "postgres CPU us/req (machine)",
            ),
            SEARCHES,
        ),
        Table(
            ("POST /posts, 16 in flight", "posts/s", "p50 ms", "p99 ms", "statuses"),
            ("search indexing on", "search indexing off"),
        ),
    ),
    "delivery": (
        Table(
            (
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
            ),
            ("deliver", "publish", "raw"),
        ),
        Table(
            ("path", "stage", "p50 ms", "p99 ms"),
            ("outbox commit", "deliver script (Routes.deliver)", "script call (XADD+PUBLISH)"),
        ),
        Table(
            ("path", "emitter", "subscriber", "api workers", "ray workers", "ray system", "postgres", "redis", "total")
        ),
    ),
    "feed": (
        Table(
            (
                "post",
                "POST /posts ms",
                "all timelines ms",
                "feed.post received",
                "p50 ms",
                "p99 ms",
                "Redis bytes / recipient",
                "event data bytes",
            )
        ),
        Table(
            (
                "data",
                "round",
                "healthz req/s",
                "feed req/s",
                "ratio",
                "p50 ms",
                "p99 ms",
                "non-2xx",
                "worker CPU us/req",
                "postgres CPU us/req",
            )
        ),
    ),
    "posts": (
        Table(POSTS_PHASE, ("create photo post", "react (random user, post)", "comment (random user, post)")),
        Table(POSTS_PHASE),  # the hot post against the spread posts, one row per round and kind
        Table(
            ("check", "found", "expected (rows)", "equal"),
            ("hot post: reactions (API counts)", "all posts: reaction rows the client's ops leave"),
        ),
        Table(
            (
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
            ),
            POST_READS,
        ),
        Table(
            (
                "endpoint",
                "req/s median",
                "ratio to healthz median (min-max)",
                "p50 ms median",
                "p99 ms median",
                "non-2xx",
                "worker CPU us/req median",
                "postgres CPU us/req median",
                "CPU quotient healthz/endpoint median",
            ),
            POST_READS,
        ),
    ),
    "uploads": (
        Table(
            (
                "what",
                "in flight",
                "uploads",
                "uploads/s",
                "MB/s",
                "p50 ms",
                "p99 ms",
                "worker CPU ms/upload",
                "client CPU ms/upload",
            ),
            ("PUT alone", "declare + PUT + complete"),
        ),
        Table(("#", "PUT MB/s", "PUT s", "worker CPU ms/MB", "client CPU ms/MB"), prefix=True),
        Table(("#", "upload MB", "complete ms", "worker CPU ms"), prefix=True),
        Table(("complete of", "median ms", "min ms", "max ms"), ("100 MiB video/mp4 (ranged reads)",)),
    ),
    "recovery": (Table(("measure", "ms"), ("shard kill -> events stored (HTTP 200)",)),),
    "graph_reads": (
        Table(
            (
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
            ),
            GRAPH_READS,
        ),
        Table(
            (
                "endpoint",
                "req/s median",
                "ratio to healthz median (min-max)",
                "p50 ms median",
                "p99 ms median",
                "non-2xx",
                "worker CPU us/req median",
                "CPU quotient healthz/endpoint median",
            ),
            GRAPH_READS,
        ),
        Table(
            ("query", "first ms", "best of 5 ms", "indexes", "buffers (top node)"),
            ("profile: find_user_by_username", "followers page 1", "following page 1", "viewer_flags of page 1"),
        ),
    ),
    "two_nodes": (
        Table(
            ("C", "shards on", "ops/s", "p50 ms", "p99 ms", "ops/call"),
            ("two nodes", "one node", "ratio two / one", "kill -> serving again (s)"),
        ),
        Table(("shards on", "arrived", "p50 ms", "p99 ms"), ("two nodes", "one node", "ratio two / one (p99)")),
    ),
    "http_reads": (
        Table(
            (
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
            ),
            ("json", "msgpack", "healthz", "me"),
        ),
        Table(
            ("encoding", "req/s ratio min", "req/s ratio median", "req/s ratio max", "CPU ratio median"),
            ("json", "msgpack"),
        ),
    ),
    "ws_idle": (
        Table(
            (
                "checkpoint",
                "sockets",
                "open s (cum.)",
                "worker RSS MiB",
                "worker USS MiB",
                "RSS KiB/socket",
                "USS KiB/socket",
                "shards USS KiB/socket",
                "client USS KiB/socket",
            ),
            ("server idle", "baseline (after warm-up)", "step 1", "step 4"),
        ),
    ),
    "batching": (
        Table(
            ("C", "client", "ops", "ops/s", "p50 ms", "p99 ms", "Ray calls/op", "ops/call"),
            ("batched (adaptive)", "one call per op (max_batch=1)", "ratio batched / one per op"),
        ),
    ),
    "actors": (
        Table(
            (
                "run",
                "created",
                "seconds",
                "actors/s",
                "RSS MiB/actor",
                "PSS MiB/actor",
                "USS MiB/actor",
                "avail. drop MiB/actor",
                "sum RSS GiB",
                "avail. drop GiB",
            )
        ),
        Table(
            ("users", "entities", "shard RSS before MiB", "after MiB", "RSS B/user", "USS B/user", "us/activation"),
            ("idle (loaded)", "online (1 socket)"),
        ),
    ),
    "http_reads --encoding": (
        Table(
            (
                "body",
                "presenter only us",
                "before: response_model + JSON us",
                "before: + msgpack re-encode us",
                "after: wire struct, msgspec JSON us",
                "after: wire struct, msgspec msgpack us",
            ),
            ("one Me", "a page of 20 Me"),
        ),
    ),
}


def tables(stdout: str) -> list[list[list[str]]]:
    """The Markdown tables in ``stdout`` (benchmarks/_harness.py ``table``): each a list of rows of cells, the
    header first, without the separator line."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*stdout.splitlines(), ""]:
        if line.startswith("|") and line.endswith("|"):
            cells = [cell.strip() for cell in line[1:-1].split("|")]
            if not all(cell and set(cell) == {"-"} for cell in cells):  # not the line under the header
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


def missing(expected: tuple[Table, ...], printed: list[list[list[str]]]) -> list[Table]:
    """The expected tables not printed: each needs its own printed table with that header, at least one row, and
    every one of its labels among the cells of its rows."""
    unused = list(printed)
    absent = []
    for want in expected:
        for table in unused:
            header, rows = table[0], table[1:]
            same = header[: len(want.header)] == list(want.header) if want.prefix else header == list(want.header)
            cells = {cell for row in rows for cell in row}
            if same and rows and all(len(row) == len(header) for row in rows) and set(want.labels) <= cells:
                unused.remove(table)
                break
        else:
            absent.append(want)
    return absent


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_smoke(benchmark: str) -> Run:
    """``python benchmarks/<name>.py --smoke [flags]`` from the repository root; past its time SIGTERM (Bench
    cleans up), then SIGKILL."""
    name, *flags = benchmark.split()
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, f"benchmarks/{name}.py", "--smoke", *flags],
        cwd=REPO,
        env={**os.environ, **loopback_env()},  # what Bench would restart the script with
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group: a last-resort SIGKILL takes its helper processes with it
    )
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = process.communicate(timeout=CLEANUP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
        return Run(-1, stdout, stderr + f"\n(timed out after {RUN_TIMEOUT_S} s)", time.monotonic() - started)
    return Run(process.returncode, stdout, stderr, time.monotonic() - started)


@pytest.fixture(scope="module")
def smoke_runs(request: pytest.FixtureRequest) -> Iterator[dict[str, Future[Run]]]:
    """The smoke runs of the benchmarks selected in this session, started in test order, ``AT_ONCE`` at a time:
    most of a smoke run is waiting (a server starting, wrk's whole seconds, paced phases), so two overlap well on
    two cores."""
    selected = [
        item.callspec.params["benchmark"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    ]
    pool = ThreadPoolExecutor(max_workers=AT_ONCE, thread_name_prefix="smoke")
    try:
        yield {benchmark: pool.submit(run_smoke, benchmark) for benchmark in selected}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # the runs under way finish (and clean up) first


@pytest.mark.parametrize("benchmark", list(BENCHMARKS))
def test_benchmark_runs_at_smoke_scale_and_prints_its_tables(
    benchmark: str, smoke_runs: dict[str, Future[Run]]
) -> None:
    result = smoke_runs[benchmark].result()
    print(f"{benchmark} --smoke: {result.seconds:.1f} s")  # shown with -rP or -s
    output = f"stdout (end):\n{result.stdout[-6000:]}\nstderr (end):\n{result.stderr[-6000:]}"
    assert result.returncode == 0, f"{benchmark} --smoke exited {result.returncode}\n{output}"
    absent = missing(BENCHMARKS[benchmark], tables(result.stdout))
    assert not absent, f"{benchmark} --smoke did not print these tables: {absent}\n{output}"


def test_every_benchmark_script_has_a_smoke_run() -> None:
    scripts = {path.stem for path in (REPO / "benchmarks").glob("*.py") if not path.stem.startswith("_")}
    seeders = {"graph_seed", "recs_seed", "seed_search"}  # run by graph_reads, recs and search
    seeders |= {"chat_baseline"}  # the one-process server chat_latency runs its baseline phases against
    assert scripts - seeders == {benchmark.split()[0] for benchmark in BENCHMARKS}
