"""Graceful drain: on SIGTERM a gateway refuses new sockets, closes its open ones with 1012 and a reason, and
exits within DRAIN_S; a client that reconnects with since to another gateway gets every event emitted around
the drain, once, in order."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest
import websockets

from actors.runtime.cluster import free_port
from tests.api.realtime_helpers import emit, stream_pos
from tests.conftest import Server, start_server, stop_server
from tests.support import WsClient

DRAIN_S = 6


async def test_sigterm_drains_sockets_with_1012_and_a_reconnect_elsewhere_loses_nothing(
    server: Server, make_api: Any, register: Any
) -> None:
    api = make_api("json")
    user = await register(api)
    uid = user["user"]["id"]
    port = free_port()
    # A second gateway process of the same deploy (same database, Redis prefix, Ray namespace: same shards).
    # One worker: the socket and the refused one meet the same process.
    env = {
        **server.env,
        "PORT": str(port),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "DRAIN_S": str(DRAIN_S),
        "WORKERS": "1",
    }
    log_path = server.log_path.with_name("server-drained.log")
    process = start_server(env, log_path)
    try:
        base = f"http://127.0.0.1:{port}"
        ws = await WsClient.connect(base, api.token)
        await ws.gateway()
        before = await emit(api, uid, 5, note="before")  # emitted through the session server (the other gateway)
        seen = [(await ws.next_of("test.event"))["id"] for _ in range(5)]
        assert seen == sorted(before, key=stream_pos)

        emitted: list[str] = []

        async def keep_emitting() -> None:
            for n in range(20):
                emitted.extend(await emit(api, uid, 1, note=f"around {n}"))
                await asyncio.sleep(0.05)

        producer = asyncio.create_task(keep_emitting())
        await asyncio.sleep(0.2)
        terminated_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code, reason = await asyncio.wait_for(ws.closed, timeout=DRAIN_S)
        assert code == 1012, (code, reason)
        assert "since" in reason
        # No new socket here: 503 with Retry-After while the drain runs, connection refused once uvicorn closed
        # its listener (the drain of one idle socket takes milliseconds, so usually the latter).
        with pytest.raises((websockets.InvalidStatus, OSError)) as refused:
            await WsClient.connect(base, api.token)
        if isinstance(refused.value, websockets.InvalidStatus):
            assert refused.value.response.status_code == 503
            assert refused.value.response.headers["Retry-After"] == "1"
        await producer
        exit_code = await asyncio.to_thread(process.wait, DRAIN_S + 5)
        assert time.monotonic() - terminated_at < DRAIN_S + 2
        # uvicorn re-raises the signal it handled once it has shut down cleanly: death by SIGTERM, not a crash.
        assert exit_code in (0, -signal.SIGTERM), log_path.read_text()[-3000:]
        seen += [f["id"] for f in ws.seen if f["type"] == "test.event" and f["id"] not in seen]

        # Reconnect with since to the other gateway: everything after the last event seen, once, in order.
        again = await WsClient.connect(server.base_url, api.token, since=seen[-1])
        everything = sorted(set(before) | set(emitted), key=stream_pos)
        missed = [e for e in everything if stream_pos(e) > stream_pos(seen[-1])]
        replayed = [(await again.next_of("test.event", timeout=15))["id"] for _ in range(len(missed))]
        assert replayed == missed
        assert [f for f in await again.quiet(0.3) if f["type"] == "test.event"] == []
        assert sorted(set(seen) | set(replayed), key=stream_pos) == everything
        await again.close()
        log = log_path.read_text()
        assert "gateway drained" in log
        assert "Traceback" not in log
    finally:
        if process.poll() is None:
            stop_server(process)
