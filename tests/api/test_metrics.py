"""``GET /metrics`` over the real server: both worker processes count, the counters move with real traffic, and
only callers of ``METRICS_ALLOW`` (the test server's default, loopback) are answered."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.api.realtime_helpers import emit, socket_on_gateway
from tests.conftest import Server
from tests.support import Api, assert_error, wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _fresh_client(server: Server) -> httpx.AsyncClient:
    """A new TCP connection per request, so that the kernel hands requests to both worker processes."""
    return httpx.AsyncClient(base_url=server.base_url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0))


async def scrape(server: Server, headers: Mapping[str, str] | None = None) -> tuple[int, Samples]:
    """One scrape from loopback: (pid of the worker that served it, every sample)."""
    async with _fresh_client(server) as http:
        response = await http.get("/metrics", headers=dict(headers or {}))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return int(response.headers["x-worker-pid"]), samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def scrape_each_worker(server: Server, pids: set[int]) -> dict[int, Samples]:
    """A scrape served by each of ``pids`` (each sums every worker's files, so each must show everything)."""
    got: dict[int, Samples] = {}
    for _ in range(200):
        pid, samples = await scrape(server)
        got.setdefault(pid, samples)
        if pids <= set(got):
            return got
    raise AssertionError(f"scrapes reached only {sorted(got)} of {sorted(pids)}")


async def test_request_counts_are_summed_over_both_worker_processes(server: Server) -> None:
    route = {"method": "GET", "route": "/api/v1/_test/whoami", "status": "200"}
    _, before = await scrape(server)
    start = value(before, "i9lyfe_http_request_duration_seconds_count", **route)

    pids: set[int] = set()
    made = 0
    async with _fresh_client(server) as http:
        while len(pids) < 2 or made < 10:
            reply = await http.get("/api/v1/_test/whoami")
            assert reply.status_code == 200
            pids.add(int(reply.json()["pid"]))
            made += 1
            assert made < 300, f"only workers {pids} answered"

    # Whichever worker serves the scrape, it counts the requests both served.
    for pid, samples in (await scrape_each_worker(server, pids)).items():
        assert value(samples, "i9lyfe_http_request_duration_seconds_count", **route) == start + made, pid
        bucket = value(samples, "i9lyfe_http_request_duration_seconds_bucket", **route, le="+Inf")
        assert bucket == start + made, pid
        assert value(samples, "i9lyfe_http_request_duration_seconds_sum", **route) > 0


async def test_requests_are_labelled_by_route_template_never_by_raw_path(server: Server, make_api: Any) -> None:
    api: Api = make_api()
    marker = f"nope{random.randrange(10**9)}"
    assert_error(await api.get(f"/api/v1/{marker}"), 404, "not_found")
    assert_error(await api.get("/api/v1/me"), 401, "unauthenticated")
    # A body request: the codec hands the router a copy of the scope, and the template is still found.
    assert_error(await api.post("/api/v1/auth/login", {"login": "x"}), 422, "validation_failed")
    assert_error(await api.request("PROPFIND", "/api/v1/me"), 405)

    _, samples = await scrape(server)
    count = "i9lyfe_http_request_duration_seconds_count"
    assert value(samples, count, method="GET", route="unmatched", status="404") >= 1
    assert value(samples, count, method="GET", route="/api/v1/me", status="401") >= 1
    assert value(samples, count, method="POST", route="/api/v1/auth/login", status="422") >= 1
    assert value(samples, count, method="other", route="/api/v1/me", status="405") >= 1
    labels = {v for (_, ls) in samples for _, v in ls}
    assert not any(marker in label for label in labels)


async def test_sockets_frames_delivery_latency_and_presence_move_the_counters(
    server: Server, make_api: Any, register: Any
) -> None:
    api: Api = make_api()
    user = await register(api)
    uid = user["user"]["id"]
    _, before = await scrape(server)
    open_before = value(before, "i9lyfe_ws_connections")
    onlines = total(before, "i9lyfe_presence_transitions_total", state="online")
    offlines = total(before, "i9lyfe_presence_transitions_total", state="offline")

    # One socket on each gateway process (one in JSON, one in MessagePack): the gauge sums both workers.
    ws1, gateway1 = await socket_on_gateway(server.base_url, api.token)
    ws2, _ = await socket_on_gateway(server.base_url, api.token, avoid=gateway1, fmt="msgpack")

    async def both_open() -> Samples | None:
        samples = (await scrape(server))[1]
        return samples if value(samples, "i9lyfe_ws_connections") == open_before + 2 else None

    await wait_until(both_open)
    _, mid = await scrape(server)
    for _ in range(3):
        assert (await ws1.request("ping"))["ok"]

    started = time.time()
    [event_id] = await emit(api, uid)
    for ws in (ws1, ws2):
        assert (await ws.next_of("test.event"))["id"] == event_id
    elapsed = time.time() - started

    async def delivered() -> Samples | None:
        samples = (await scrape(server))[1]
        count = value(samples, "i9lyfe_delivery_latency_seconds_count")
        return samples if count >= value(mid, "i9lyfe_delivery_latency_seconds_count") + 2 else None

    after = await wait_until(delivered)
    latency = value(after, "i9lyfe_delivery_latency_seconds_sum") - value(mid, "i9lyfe_delivery_latency_seconds_sum")
    assert 0 <= latency <= 2 * elapsed + 1.0, latency  # two observations, each within the emit round trip
    # 3 pings (plus the gateway() pings that picked the sockets) in; their acks and the two events out.
    frames_in = value(after, "i9lyfe_ws_frames_total", direction="in") - value(
        before, "i9lyfe_ws_frames_total", direction="in"
    )
    frames_out = value(after, "i9lyfe_ws_frames_total", direction="out") - value(
        before, "i9lyfe_ws_frames_total", direction="out"
    )
    assert frames_in >= 5, frames_in
    assert frames_out >= frames_in + 2, (frames_in, frames_out)
    # Each connect and the pings went to the user's shard through batched calls.
    calls = "i9lyfe_shard_call_seconds_count"
    assert value(after, calls, outcome="ok") >= value(before, calls, outcome="ok") + 2
    assert value(after, "i9lyfe_shard_batch_size_count") >= value(before, "i9lyfe_shard_batch_size_count") + 2
    assert total(after, "i9lyfe_presence_transitions_total", state="online") >= onlines + 1
    assert total(after, "i9lyfe_shard_up") == len([k for (n, k) in after if n == "i9lyfe_shard_up"])

    await ws1.close()
    await ws2.close()

    async def closed() -> Samples | None:
        samples = (await scrape(server))[1]
        return samples if value(samples, "i9lyfe_ws_connections") == open_before else None

    await wait_until(closed)

    async def went_offline() -> bool:
        samples = (await scrape(server))[1]
        return total(samples, "i9lyfe_presence_transitions_total", state="offline") >= offlines + 1

    await wait_until(went_offline)


async def test_outbox_backlog_retries_and_dead_rows_are_counted(server: Server, db: asyncpg.Pool) -> None:
    _, before = await scrape(server)
    waiting, dead = random.randrange(1 << 60, 1 << 62), random.randrange(1 << 60, 1 << 62)
    # A row whose relay attempt failed, due again in an hour (no relay takes it meanwhile), and a dead row.
    await db.execute(
        """INSERT INTO outbox (id, recipients, type, data, attempts, last_error, next_attempt_at)
           VALUES ($1, '{}', 'test.event', '\\x80', 1, 'ConnectionError', now() + interval '1 hour')""",
        waiting,
    )
    await db.execute(
        """INSERT INTO outbox (id, recipients, type, data, attempts, last_error, dead_at)
           VALUES ($1, '{}', 'test.event', '\\x80', 16, 'ConnectionError', now())""",
        dead,
    )
    try:
        _, after = await scrape(server)
        assert value(after, "i9lyfe_outbox_retrying") == value(before, "i9lyfe_outbox_retrying") + 1
        assert value(after, "i9lyfe_outbox_dead") == value(before, "i9lyfe_outbox_dead") + 1
        assert value(after, "i9lyfe_outbox_backlog") >= 1
    finally:
        await db.execute("DELETE FROM outbox WHERE id = ANY($1)", [waiting, dead])
    _, cleared = await scrape(server)
    assert value(cleared, "i9lyfe_outbox_retrying") == value(before, "i9lyfe_outbox_retrying")


async def test_metrics_answer_only_callers_of_metrics_allow(server: Server) -> None:
    async with _fresh_client(server) as http:
        # Allowed: a loopback caller (the peer), and a loopback client named by a trusted proxy.
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})).status_code == 200
        # Refused: an outside client behind the trusted (loopback) proxy. The 404 is that of a path that does
        # not exist, so nothing tells the caller that the endpoint is there.
        refused = await http.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"})
        unknown = await http.get("/no-such-path", headers={"X-Forwarded-For": "203.0.113.7"})
        for reply in (refused, unknown):
            assert reply.status_code == 404
            assert reply.json()["error"]["code"] == "not_found"
            assert set(reply.json()["error"]) == {"code", "message", "details"}
        assert refused.json() == unknown.json()
        assert b"i9lyfe_" not in refused.content
