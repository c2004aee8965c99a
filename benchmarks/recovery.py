"""Recovery times of the realtime core: a client's TCP reset to its presence going offline, and a kill of every
UserShard to every socket re-registered and caught up.

Sets up its own database, Redis prefix, Ray head and a 2-worker server (benchmarks/_harness.py), signs up
``--users`` users, opens one socket each, and a watcher subscribed to their presence. Then:

1. ``--resets`` times: a fresh socket of one user is opened, then dropped with a TCP RST (no close frame);
   measured until the watcher receives ``online: false``.
2. Every UserShard process is SIGKILLed; right after, one event per user is stored (delivered through the users'
   routes in Redis, which outlive the shards: since issue 21 no push goes through a shard); measured until the
   shards know every socket again and until every socket has received its event.

    .venv/bin/python benchmarks/recovery.py [--users 102] [--resets 10] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

# benchmarks/actors.py would shadow the actors package: import from the repository root instead.
sys.path.remove(os.path.dirname(os.path.realpath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import httpx
import msgpack
import uvloop
from websockets.asyncio.client import ClientConnection, connect

import benchmarks._harness as h

SMOKE = {"users": 6, "resets": 2}


async def open_socket(url: str, token: str) -> ClientConnection:
    return await connect(
        url,
        additional_headers={"Authorization": f"Bearer {token}"},
        subprotocols=["i9.msgpack"],  # type: ignore[list-item]
        compression=None,
        open_timeout=30,
    )


async def frames(ws: ClientConnection, out: asyncio.Queue[dict[str, Any]]) -> None:
    async for raw in ws:
        await out.put(msgpack.unpackb(raw, raw=False))


def reset_socket(base_url: str, token: str) -> socket.socket:
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    request = (
        f"GET /api/v1/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    return sock


async def until(check: Any, timeout: float = 60.0) -> float:
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise RuntimeError("condition not met in time")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def run(server: h.Server, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    mail = workdir / "var" / "mail"
    users = []
    for i in range(args.users):
        users.append(await h.signup(server.base_url, mail, f"rec{i}_{os.getpid()}", ip=f"10.8.{i // 250}.{i % 250}"))
    url = h.ws_url(server.base_url)
    watcher_user, target, *members = users
    watcher = await open_socket(url, watcher_user.access_token)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    readers = [asyncio.create_task(frames(watcher, inbox))]
    for n, user in enumerate([target, *members]):
        await watcher.send(
            msgpack.packb({"ref": f"s{n}", "action": "subscribe", "data": {"topic": f"presence:{user.username}"}})
        )
    sockets = [await open_socket(url, u.access_token) for u in members]
    received: dict[int, asyncio.Queue[dict[str, Any]]] = {}
    for user, ws in zip(members, sockets, strict=True):
        received[user.id] = asyncio.Queue()
        readers.append(asyncio.create_task(frames(ws, received[user.id])))

    async def offline_of(username: str) -> None:
        while True:
            frame = await inbox.get()
            if frame["type"] == "presence" and frame["data"]["username"] == username and not frame["data"]["online"]:
                return

    # 1. reset -> offline
    reset_times = []
    await asyncio.sleep(1)
    while not inbox.empty():
        inbox.get_nowait()
    for _ in range(args.resets):
        sock = await asyncio.to_thread(reset_socket, server.base_url, target.access_token)
        await asyncio.sleep(0.3)  # online first (its own presence event), then vanish
        started = time.monotonic()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        await asyncio.wait_for(offline_of(target.username), 30)
        reset_times.append(time.monotonic() - started)

    # 2. kill every shard, store an event per user while they restart
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        shards = (await http.get("/api/v1/_test/shards")).json()
        for shard in shards:
            os.kill(shard["pid"], signal.SIGKILL)
        killed = time.monotonic()
        reply = await http.post(
            "/api/v1/_test/events",
            json={"recipients": [str(u.id) for u in members], "count": 1, "note": "during restart"},
        )
        reply.raise_for_status()
        stored_at = time.monotonic() - killed

        async def registered() -> bool:
            try:
                reply = await http.get("/api/v1/_test/shards")
                now = reply.json()
            except (httpx.HTTPError, ValueError):
                return False
            if reply.status_code != 200:  # a shard still restarting: an error body, not the list
                return False
            return sum(s["entities"] for s in now) >= len(members) and all(
                a["epoch"] != b["epoch"] for a, b in zip(now, shards, strict=True)
            )

        await until(registered)
        rereg = time.monotonic() - killed

    got_at: list[float] = []
    for user in members:
        while True:
            frame = await asyncio.wait_for(received[user.id].get(), 60)
            if frame["type"] == "test.event":
                got_at.append(time.monotonic() - killed)
                break
    for task in readers:
        task.cancel()
    return {
        "resets": sorted(reset_times),
        "stored_s": stored_at,
        "registered_s": rereg,
        "caught_up_s": max(got_at),
        "caught_up_p50_s": sorted(got_at)[len(got_at) // 2],
        "sockets": len(members),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--users", type=int, default=102, help="users (a watcher, a reset target, the rest hold sockets)"
    )
    parser.add_argument("--resets", type=int, default=10)
    args = h.parse_args(parser, SMOKE)
    with h.Bench("recovery", smoke=args.smoke) as bench:
        dsn = bench.database()
        prefix = bench.redis_prefix()
        head = bench.ray_head(num_cpus=2)
        server = bench.server(dsn, prefix, head, {"WORKERS": "2", "RATE_LIMITS": "auth=100000/60"})
        result = uvloop.run(run(server, bench.workdir, args))
    resets = result["resets"]
    h.say()
    h.say(f"# {h.command_line()}")
    h.say(
        h.table(
            ["measure", "ms"],
            [
                [f"TCP reset -> offline, p50 of {len(resets)}", 1000 * h.percentile(resets, 50)],
                [f"TCP reset -> offline, max of {len(resets)}", 1000 * resets[-1]],
                ["shard kill -> events stored (HTTP 200)", 1000 * result["stored_s"]],
                [f"shard kill -> all {result['sockets']} sockets re-registered", 1000 * result["registered_s"]],
                [f"shard kill -> all {result['sockets']} sockets caught up, p50", 1000 * result["caught_up_p50_s"]],
                [f"shard kill -> all {result['sockets']} sockets caught up, last", 1000 * result["caught_up_s"]],
            ],
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
