"""1:1 chat: send-to-receive latency across two gateway processes, and the messages/s a ChatShard sustains.

Starts ``python -m api`` with WORKERS=2 (two gateway processes) and RATE_LIMITS raised (``write`` and
``ws_connect``, so the per-user write bucket and the per-IP handshake bucket never answer 429), signs users up
through the real flow and opens the chats with ``POST /api/v1/chats``:

* ``one chat``: user ``solo`` with ``--solo-sockets`` sockets, in one chat with receiver R0;
* ``many chats``: ``--chats`` sender users (one socket each), each in a chat with one of ``--receivers``
  receiver users (sender i with receiver i mod R), so the chats spread over the ChatShards by their ids.

Every sender socket is on one gateway process and every receiver socket on the other (the ``ping`` ack names the
gateway; a socket on the wrong one is closed and opened again). Receiver sockets live in a separate client
process, so that receive times are not delayed by the senders. Frames are JSON (``i9.json``), no compression.

Latency (open loop): message n is sent at start + n/rate whatever the earlier ones are doing, as a socket frame
``chat.send`` over sender socket n mod S (so each socket stays far below its 30 frames/s limit), its text
``"<time.time_ns()> <n>"``; the receiver takes latency = receive time - that stamp (same clock). Each phase also
reports the ack time (frame sent -> ``ack`` back on the sender's socket), lost messages (acked but never
received), and order (per receiver socket and chat, ``seq`` must go up by exactly 1).

Throughput (closed loop, ``--inflight`` at once, ``--tput-seconds`` each): ``chat.send`` frames over the sender
sockets (each socket keeps its share of the in-flight sends, the next frame after an ack); the same sends over HTTP
(``POST /api/v1/chats/{id}/messages``) through the api, all on the one chat or spread over the many chats; and the
same ``send`` op straight to the ChatShards from this process (a ``ShardClient`` as the api builds one, over Ray),
which leaves out HTTP and the gateway: the shard's own capacity. Every phase records the CPU time of the api
workers, the ChatShard and UserShard processes (their pids from ``ping``), postgres (the processes of the bench's
database and those every database shares) and redis (per message; their sum is the server total) and Ray's other
processes ("ray other", beside it).

Latency phases (issue 21): one chat at ``--one-chat-rates`` (100 and 300/s, over ``--solo-sockets`` 16 sockets of
one user, each under the 30 frames/s a socket may send) and 64 chats at ``--rates`` (100 and 600/s).

Baseline (``--baseline``, on by default): then the api stops (Ray and its shards stay up, idle) and
benchmarks/chat_baseline.py, one process without Ray (FastAPI WebSocket, asyncpg insert with the same seq guard,
the same stream append, one PUBLISH), serves the same users, chats and clients through the same latency and HTTP
throughput phases; our messages/s and server CPU per message are printed as ratios of its.

    .venv/bin/python benchmarks/chat_latency.py [--rates 100,600] [--one-chat-rates 100,300] [--seconds 10]
        [--chats 64] [--solo-sockets 16] [--inflight 32] [--tput-seconds 10] [--no-baseline] [--smoke]
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
import json
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil  # type: ignore[import-untyped]  # no stubs installed
import uvloop

from actors.runtime.cluster import free_port
from benchmarks import _harness as h
from domain.chat import send_op

TARGET_P99_MS = 25.0
BASELINE_GATEWAY = "baseline"  # what benchmarks/chat_baseline.py answers to ping
RATE_LIMITS = "write=100000/60,ws_connect=100000/60"
SMOKE = {
    "rates": "50",
    "one_chat_rates": "50",
    "seconds": 0.5,
    "chats": 4,
    "receivers": 2,
    "solo_sockets": 2,
    "inflight": 4,
    "tput_seconds": 0.3,
    "idle_seconds": 0.5,
    "drain_timeout": 30.0,
}


# ---------------------------------------------------------------- sockets on a chosen gateway


async def open_socket(url: str, token: str, *, want: str | None = None, avoid: str | None = None) -> tuple[Any, str]:
    """A JSON socket whose gateway is ``want`` (or not ``avoid``), as tests/api/realtime_helpers.py does."""
    from websockets.asyncio.client import connect

    for _ in range(60):
        ws = await connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            subprotocols=["i9.json"],  # type: ignore[list-item]
            compression=None,
            max_size=2**22,
            open_timeout=30,
        )
        await ws.send(orjson.dumps({"ref": "gw", "action": "ping", "data": {}}).decode())
        gateway = None
        while gateway is None:
            frame = orjson.loads(await ws.recv())
            if frame["type"] == "ack" and frame["data"].get("ref") == "gw":
                gateway = str(frame["data"]["result"]["gateway"])
        if (want is None or gateway == want) and (avoid is None or gateway != avoid):
            return ws, gateway
        await ws.close()
    raise RuntimeError("could not reach the wanted gateway process")


# ---------------------------------------------------------------- the receiver (a separate process)


async def receiver(url: str, tokens: list[str], avoid: str) -> None:
    """Open one socket per token on a gateway other than ``avoid``; answer ``report`` lines on stdin with the
    chat.message frames received since: [socket, chat_id, seq, n, sent_ns, received_ns]."""
    sockets = [(await open_socket(url, token, avoid=avoid)) for token in tokens]
    records: list[list[Any]] = []

    async def read(k: int, ws: Any) -> None:
        async for raw in ws:
            received = time.time_ns()
            frame = orjson.loads(raw)
            if frame["type"] == "chat.message":
                data = frame["data"]
                sent, _, n = str(data["text"]).partition(" ")
                records.append([k, data["chat_id"], data["seq"], int(n), int(sent), received])

    readers = [asyncio.create_task(read(k, ws)) for k, (ws, _) in enumerate(sockets)]
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print(json.dumps({"gateways": sorted({g for _, g in sockets})}), flush=True)
    while line := (await stdin.readline()).decode().strip():
        if line == "report":
            batch, records[:] = list(records), []
            alive = sum(1 for task in readers if not task.done())
            print(json.dumps({"records": batch, "alive": alive}), flush=True)
        elif line == "quit":
            break
    for task in readers:
        task.cancel()
    for ws, _ in sockets:
        with contextlib.suppress(Exception):
            await ws.close()


class Receiver:
    def __init__(self, url: str, tokens: list[str], avoid: str) -> None:
        env = dict(os.environ, BENCH_WS_URL=url, BENCH_WS_TOKENS=json.dumps(tokens), BENCH_WS_AVOID=avoid)
        self.count = len(tokens)
        self.process = subprocess.Popen(
            [h.PYTHON, str(Path(__file__).resolve()), "--receiver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=h.REPO,
        )
        self.gateways = list(self._read()["gateways"])

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("receiver exited")
        return dict(json.loads(line))

    def report(self) -> list[list[Any]]:
        assert self.process.stdin is not None
        self.process.stdin.write(b"report\n")
        self.process.stdin.flush()
        reply = self._read()
        if reply["alive"] != self.count:
            raise RuntimeError(f"receiver sockets closed: {self.count - reply['alive']} of {self.count}")
        return list(reply["records"])

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            try:
                self.process.stdin.write(b"quit\n")
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(timeout=5)


# ---------------------------------------------------------------- senders (this process)


class Sender:
    """One sender socket: sends ``chat.send`` frames, records when each ack came back (ref = message n)."""

    def __init__(self, ws: Any, chat_id: str) -> None:
        self.ws = ws
        self.chat_id = chat_id
        self.acks: dict[int, tuple[int, bool, str]] = {}  # n -> (ack ns, ok, error code)
        self.waiters: dict[int, asyncio.Future[tuple[int, bool, str]]] = {}  # n -> its ack (closed loop)
        self.echoes = 0
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            received = time.time_ns()
            frame = orjson.loads(raw)
            if frame["type"] == "ack":
                data = frame["data"]
                ref = str(data.get("ref") or "")
                if ref.isdigit():
                    code = "" if data["ok"] else str(data.get("error", {}).get("code"))
                    self.acks[int(ref)] = ack = (received, bool(data["ok"]), code)
                    waiter = self.waiters.pop(int(ref), None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(ack)
            elif frame["type"] == "chat.message":
                self.echoes += 1  # the sender's own devices get the message too

    async def send(self, n: int, phase: str) -> int:
        sent = time.time_ns()
        data = {"chat_id": self.chat_id, "client_id": f"{phase}-{n}", "type": "text", "text": f"{sent} {n}"}
        await self.ws.send(orjson.dumps({"ref": str(n), "action": "chat.send", "data": data}).decode())
        return sent


async def closed_loop_ws(senders: list[Sender], phase: str, first: int, window: int, seconds: float) -> dict[str, Any]:
    """``window`` sends in flight on each sender socket (a frame, then its ack, then the next) until ``seconds``
    have passed; message numbers from ``first`` (``next``: the first one not used)."""
    counter = iter(range(first, first + 10**9))
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    sent: dict[int, int] = {}
    loop = asyncio.get_running_loop()
    deadline = time.perf_counter() + seconds

    async def run(sender: Sender) -> None:
        while time.perf_counter() < deadline:
            n = next(counter)
            waiter: asyncio.Future[tuple[int, bool, str]] = loop.create_future()
            sender.waiters[n] = waiter
            t = await sender.send(n, phase)
            try:
                ack_ns, ok, code = await asyncio.wait_for(waiter, timeout=60)
            except TimeoutError:
                outcomes["no ack in 60 s"] += 1
                continue
            if ok:
                outcomes["acked"] += 1
                sent[n] = t
                latencies.append((ack_ns - t) / 1e6)
            else:
                outcomes[code] += 1

    began = time.perf_counter()
    await asyncio.gather(*(run(s) for s in senders for _ in range(window)))
    wall = time.perf_counter() - began
    latencies.sort()
    return {"sent": sent, "statuses": dict(outcomes), "wall": wall, "latencies": latencies, "next": next(counter)}


async def open_loop(senders: list[Sender], phase: str, first: int, count: int, rate: float) -> dict[str, Any]:
    """Message first+i goes at start + i/rate over socket i mod S; returns send times and the pacing lag."""
    sent: dict[int, int] = {}
    lags: list[float] = []
    start = time.perf_counter() + 0.05
    began = ended = 0.0
    for i in range(count):
        target = start + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.perf_counter()
        lags.append(now - target)
        if i == 0:
            began = now
        ended = now
        n = first + i
        sent[n] = await senders[i % len(senders)].send(n, phase)
    lags.sort()
    return {
        "sent": sent,
        "achieved_rate": (count - 1) / (ended - began) if ended > began else 0.0,
        "lag_p99_ms": h.percentile(lags, 99) * 1000,
    }


# ---------------------------------------------------------------- CPU accounting


def chat_shard_handles(namespace: str) -> list[Any]:
    """The ChatShard handles ordered by index (what the api's ShardClient holds); none are created here."""
    import ray

    by_index: dict[int, Any] = {}
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] == namespace and entry["name"].startswith("chat-shard-"):
            handle = ray.get_actor(entry["name"], namespace=namespace)
            info: Any = ray.get(handle.ping.remote(), timeout=30)
            by_index[int(info["index"])] = handle
    return [by_index[k] for k in sorted(by_index)]


# The server total of a phase: these groups (``h.SERVER_GROUPS``, by the names printed here); "ray other" (Ray's
# own processes: GCS, raylet, dashboard, idle workers) is printed beside it, not in it. The baseline's total is
# its one process + postgres + redis.
SERVER_TOTAL = ("api workers", "ChatShards", "UserShards", "postgres", "redis", "baseline process")


def cpu_groups(server: h.Server, head: Any, receiver_pid: int) -> h.ProcessGroups:
    groups = h.server_cpu_groups(server, head).groups  # the shards by their ping; postgres of this database
    return h.ProcessGroups(
        {
            "client (senders)": [psutil.Process()],
            "client (receivers)": [psutil.Process(receiver_pid)],
            "api workers": groups["api workers"],
            "ChatShards": groups["ChatShards"],
            "UserShards": groups["UserShards"],
            "ray other": groups["ray system"],
            "postgres": groups["postgres"],
            "redis": groups["redis"],
        }
    )


def baseline_groups(process: subprocess.Popen[bytes], receiver_pid: int, database: str) -> h.ProcessGroups:
    return h.ProcessGroups(
        {
            "client (senders)": [psutil.Process()],
            "client (receivers)": [psutil.Process(receiver_pid)],
            "baseline process": [psutil.Process(process.pid)],
            "postgres": lambda: h.postgres_processes(database),
            "redis": h.processes_named("redis-server"),
        }
    )


CpuMeter = h.CpuMeter


def server_total(cpu: dict[str, float]) -> float:
    return sum(v for k, v in cpu.items() if k in SERVER_TOTAL)


# ---------------------------------------------------------------- analysis


def analyse(records: list[list[Any]], sent: dict[int, int], acks: dict[int, tuple[int, bool, str]]) -> dict[str, Any]:
    mine = [r for r in records if r[3] in sent]
    received = {r[3]: r for r in mine}
    latencies = sorted((r[5] - r[4]) / 1e6 for r in received.values())
    ok = {n for n, a in acks.items() if n in sent and a[1]}
    errors = Counter(a[2] for n, a in acks.items() if n in sent and not a[1])
    ack_ms = sorted((acks[n][0] - sent[n]) / 1e6 for n in ok)
    lost = len(ok - set(received))
    # order: per (receiver socket, chat) seq must go up by exactly 1 in arrival order
    last: dict[tuple[int, str], int] = {}
    out_of_order = gaps = 0
    for r in records:
        key = (r[0], r[1])
        if key in last:
            if r[2] <= last[key]:
                out_of_order += 1
            elif r[2] != last[key] + 1:
                gaps += 1
        last[key] = max(last.get(key, 0), r[2])
    return {
        "received": len(received),
        "acked_ok": len(ok),
        "no_ack": len(sent) - len([n for n in sent if n in acks]),
        "errors": dict(errors),
        "lost": lost,
        "duplicates": len(mine) - len(received),
        "out_of_order": out_of_order,
        "seq_gaps": gaps,
        "p50": h.percentile(latencies, 50),
        "p90": h.percentile(latencies, 90),
        "p99": h.percentile(latencies, 99),
        "max": latencies[-1] if latencies else float("nan"),
        "ack_p50": h.percentile(ack_ms, 50),
        "ack_p99": h.percentile(ack_ms, 99),
    }


# ---------------------------------------------------------------- the run


async def signup_all(server: h.Server, names: list[str]) -> list[h.User]:
    mail_dir = Path(server.env["VAR_DIR"]) / "mail"
    gate = asyncio.Semaphore(8)

    async def one(i: int, name: str) -> h.User:
        async with gate:
            return await h.signup(server.base_url, mail_dir, name, ip=f"10.9.{i // 200}.{i % 200 + 1}")

    return list(await asyncio.gather(*(one(i, name) for i, name in enumerate(names))))


async def start_chat(http: httpx.AsyncClient, user: h.User, peer: h.User) -> str:
    reply = await http.post(
        "/api/v1/chats", json={"username": peer.username}, headers={"Authorization": f"Bearer {user.access_token}"}
    )
    reply.raise_for_status()
    return str(reply.json()["id"])


async def closed_loop_http(
    base_url: str, work: list[tuple[h.User, str]], phase: str, inflight: int, seconds: float
) -> dict[str, Any]:
    """``inflight`` loops, loop k sending over HTTP on chat work[k mod len] until ``seconds`` have passed."""
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    sent: dict[int, int] = {}
    counter = iter(range(10**9))
    limits = httpx.Limits(max_connections=inflight, max_keepalive_connections=inflight)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:
        deadline = time.perf_counter() + seconds

        async def loop(k: int) -> None:
            user, chat_id = work[k % len(work)]
            headers = {"Authorization": f"Bearer {user.access_token}"}
            while time.perf_counter() < deadline:
                n = next(counter)
                t = time.time_ns()
                body = {"client_id": f"{phase}-{n}", "type": "text", "text": f"{t} {n}"}
                reply = await http.post(f"/api/v1/chats/{chat_id}/messages", json=body, headers=headers)
                statuses[reply.status_code] += 1
                if reply.status_code == 201:
                    sent[n] = t
                    latencies.append((time.time_ns() - t) / 1e6)

        began = time.perf_counter()
        await asyncio.gather(*(loop(k) for k in range(inflight)))
        wall = time.perf_counter() - began
    latencies.sort()
    return {"sent": sent, "statuses": dict(statuses), "wall": wall, "latencies": latencies}


async def closed_loop_shard(
    client: Any, work: list[tuple[h.User, str]], phase: str, inflight: int, seconds: float
) -> dict[str, Any]:
    """The same ``send`` op straight to the chat's ChatShard (a ShardClient over Ray, as the api does)."""
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    sent: dict[int, int] = {}
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds

    async def loop(k: int) -> None:
        user, chat_id = work[k % len(work)]
        while time.perf_counter() < deadline:
            n = next(counter)
            t = time.time_ns()
            body = {"client_id": f"{phase}-{n}", "type": "text", "text": f"{t} {n}"}
            try:
                _message, created = await client.call(send_op(int(chat_id), user.id, body))
            except Exception as exc:
                outcomes[type(exc).__name__] += 1
                continue
            outcomes["created" if created else "replayed"] += 1
            sent[n] = t
            latencies.append((time.time_ns() - t) / 1e6)

    began = time.perf_counter()
    await asyncio.gather(*(loop(k) for k in range(inflight)))
    wall = time.perf_counter() - began
    latencies.sort()
    return {"sent": sent, "statuses": dict(outcomes), "wall": wall, "latencies": latencies}


async def run(bench: h.Bench, server: h.Server, head: Any, args: argparse.Namespace) -> dict[str, Any]:
    from actors.runtime.client import ShardClient

    tag = bench.run_id[:6]
    names = (
        [f"solo{tag}"] + [f"snd{tag}{i}" for i in range(args.chats)] + [f"rcv{tag}{i}" for i in range(args.receivers)]
    )
    began = time.perf_counter()
    users = await signup_all(server, names)
    solo, senders_u, receivers_u = users[0], users[1 : 1 + args.chats], users[1 + args.chats :]
    h.say(f"# {len(users)} users signed up in {time.perf_counter() - began:.1f} s")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        solo_chat = await start_chat(http, solo, receivers_u[0])
        many_chats = [await start_chat(http, s, receivers_u[i % len(receivers_u)]) for i, s in enumerate(senders_u)]
    chat_client = ShardClient(chat_shard_handles(bench.namespace), kind="chat")
    spread = Counter(chat_client.shard_for(int(c)) for c in many_chats)
    h.say(
        f"# {len(many_chats)} chats over ChatShards {dict(sorted(spread.items()))}; one chat on shard "
        f"{chat_client.shard_for(int(solo_chat))}"
    )

    work = {"one chat": [(solo, solo_chat)], "many chats": list(zip(senders_u, many_chats, strict=True))}
    target = await open_target(bench, server.base_url, args, solo, solo_chat, senders_u, many_chats, receivers_u)
    h.say(
        f"# senders on gateway {target.gateway}, receivers on {target.receiver.gateways}; "
        f"api workers {server.worker_pids}"
    )
    groups = cpu_groups(server, head, target.receiver.process.pid)
    ours = await measure(args, "", target, groups, work, server.base_url, chat_client, 0)
    await target.close()
    results: dict[str, Any] = {"ours": ours}
    if args.baseline:
        # The api stops (its shards and Ray stay up, idle): the same users, chats and clients, against one process.
        h.stop_server(server.process)
        baseline = start_baseline(bench, server, head)
        h.say(f"# baseline: one process without Ray, pid {baseline.pid}, {baseline.base_url}")
        target = await open_target(bench, baseline.base_url, args, solo, solo_chat, senders_u, many_chats, receivers_u)
        database = server.env["DATABASE_URL"].rsplit("/", 1)[1]
        groups = baseline_groups(baseline.process, target.receiver.process.pid, database)
        results["baseline"] = await measure(args, "b", target, groups, work, baseline.base_url, None, ours["next"])
        await target.close()
    return results


@dataclass
class Target:
    """The sockets open on one server: the sender sockets (on one gateway) and the receiver process (another)."""

    gateway: str
    solo: list[Sender]
    many: list[Sender]
    receiver: Receiver

    @property
    def senders(self) -> list[Sender]:
        return self.solo + self.many

    def acks(self) -> dict[int, tuple[int, bool, str]]:
        merged: dict[int, tuple[int, bool, str]] = {}
        for s in self.senders:
            merged.update(s.acks)
        return merged

    async def close(self) -> None:
        for s in self.senders:
            s.reader.cancel()
            with contextlib.suppress(Exception):
                await s.ws.close()
        self.receiver.stop()


async def open_target(
    bench: h.Bench,
    base_url: str,
    args: argparse.Namespace,
    solo: h.User,
    solo_chat: str,
    senders_u: list[h.User],
    many_chats: list[str],
    receivers_u: list[h.User],
) -> Target:
    """Sender sockets on one gateway process, receiver sockets (a separate process) on another; on a server of one
    process (the baseline) both on it."""
    url = h.ws_url(base_url)
    first_ws, gateway = await open_socket(url, solo.access_token)
    solo_senders = [Sender(first_ws, solo_chat)]
    for _ in range(args.solo_sockets - 1):
        solo_senders.append(Sender((await open_socket(url, solo.access_token, want=gateway))[0], solo_chat))
    many_senders = [
        Sender((await open_socket(url, s.access_token, want=gateway))[0], c)
        for s, c in zip(senders_u, many_chats, strict=True)
    ]
    avoid = "" if gateway == BASELINE_GATEWAY else gateway
    receiver = Receiver(url, [r.access_token for r in receivers_u], avoid=avoid)
    bench.defer("receiver", receiver.stop)
    return Target(gateway, solo_senders, many_senders, receiver)


async def measure(
    args: argparse.Namespace,
    tag: str,
    target: Target,
    groups: h.ProcessGroups,
    work: dict[str, list[tuple[h.User, str]]],
    base_url: str,
    chat_client: Any,
    n: int,
) -> dict[str, Any]:
    """Warm-up, idle CPU, the open-loop latency phases and the closed-loop throughput phases on one server;
    message numbers (and client ids, with ``tag``) start at ``n``."""
    pause = 0.2 if args.smoke else 1.0  # seconds: the waits for stragglers are 1 to 3 pauses
    senders = {"one chat": target.solo, "many chats": target.many}
    receiver = target.receiver
    # warm-up: every chat entity loaded (and every pool connection opened) before anything is timed
    for phase_senders in senders.values():
        out = await open_loop(phase_senders, f"{tag}warm", n, 4 * len(phase_senders), 100.0)
        n += len(out["sent"])
    await asyncio.sleep(2 * pause)
    receiver.report()

    niceness = {name: sorted({p.nice() for p in procs}) for name, procs in groups.processes().items() if procs}
    h.say(f"# niceness of the processes: {niceness}")
    meter = CpuMeter(groups)
    await asyncio.sleep(args.idle_seconds)
    idle_wall, idle_cpu = meter.spent()
    idle = {name: spent / idle_wall for name, spent in idle_cpu.items()}  # cores used with no load at all
    h.say(f"# idle cores: { {k: round(v, 3) for k, v in idle.items()} }")
    latency_rows: list[dict[str, Any]] = []
    plans = [("one chat", r) for r in args.one_chat_rates] + [("many chats", r) for r in args.rates]
    for label, rate in plans:
        phase_senders = senders[label]
        count = int(rate * args.seconds)
        h.say(f"# latency, {label}: {count} messages at {rate:.0f}/s over {len(phase_senders)} sockets ...")
        meter = CpuMeter(groups)
        out = await open_loop(phase_senders, f"{tag}lat{rate:.0f}{label[0]}", n, count, rate)
        drain = time.perf_counter()
        waiting = set(out["sent"])  # message first+i went over phase_senders[i mod S]
        while waiting and time.perf_counter() - drain < args.drain_timeout:
            await asyncio.sleep(0.2)  # an overloaded phase leaves a backlog: let it finish before the next
            waiting = {k for k in waiting if k not in phase_senders[(k - n) % len(phase_senders)].acks}
        drained = time.perf_counter() - drain
        wall, cpu = meter.spent()
        n += count
        await asyncio.sleep(3 * pause)
        result = analyse(receiver.report(), out["sent"], target.acks())
        result.update(
            label=label,
            rate=rate,
            count=count,
            sockets=len(phase_senders),
            wall=wall,
            cpu=cpu,
            achieved_rate=out["achieved_rate"],
            drained_s=drained,
            lag_p99_ms=out["lag_p99_ms"],
        )
        h.say(
            f"#   p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms, max {result['max']:.1f} ms, lost "
            f"{result['lost']}, errors {result['errors']}, out of order {result['out_of_order']}, "
            f"{1e3 * server_total(cpu) / max(1, count):.2f} ms server CPU per message"
        )
        latency_rows.append(result)
        await asyncio.sleep(pause)

    tput_rows: list[dict[str, Any]] = []
    for via in ("ws", "http", "shard") if chat_client is not None else ("ws", "http"):
        for label, chat_work in work.items():
            inflight = args.inflight if label == "one chat" else max(args.inflight, len(chat_work))
            if via == "ws":  # the same number in flight, spread over the phase's sender sockets
                window = -(-inflight // len(senders[label]))
                inflight = window * len(senders[label])
            h.say(f"# throughput via {via}, {label}: closed loop, {inflight} in flight, {args.tput_seconds:.0f} s ...")
            phase = f"{tag}tp{via}{label[0]}"
            meter = CpuMeter(groups)
            if via == "ws":
                out = await closed_loop_ws(senders[label], phase, n, window, args.tput_seconds)
                n = out["next"]
            elif via == "http":
                out = await closed_loop_http(base_url, chat_work, phase, inflight, args.tput_seconds)
            else:
                out = await closed_loop_shard(chat_client, chat_work, phase, inflight, args.tput_seconds)
            _, cpu = meter.spent()
            await asyncio.sleep(3 * pause)
            records = receiver.report()
            ok = dict.fromkeys(out["sent"], (0, True, ""))
            checked = analyse(records, out["sent"], ok)
            lat = out["latencies"]
            row = {
                "via": via,
                "label": label,
                "inflight": inflight,
                "messages": len(out["sent"]),
                "rate": len(out["sent"]) / out["wall"],
                "statuses": out["statuses"],
                "p50": h.percentile(lat, 50),
                "p99": h.percentile(lat, 99),
                "recv_p99": checked["p99"],
                "lost": checked["lost"],
                "out_of_order": checked["out_of_order"],
                "seq_gaps": checked["seq_gaps"],
                "cpu": cpu,
                "wall": out["wall"],
            }
            h.say(
                f"#   {row['rate']:.0f} messages/s, {row['statuses']}, lost {row['lost']}, "
                f"out of order {row['out_of_order']}"
            )
            tput_rows.append(row)
            await asyncio.sleep(pause)

    return {
        "latency": latency_rows,
        "throughput": tput_rows,
        "echoes": sum(s.echoes for s in target.senders),
        "gateway": target.gateway,
        "idle": idle,
        "niceness": niceness,
        "next": n,
    }


@dataclass
class BaselineServer:
    process: subprocess.Popen[bytes]
    base_url: str

    @property
    def pid(self) -> int:
        return self.process.pid


def start_baseline(bench: h.Bench, server: h.Server, head: Any) -> BaselineServer:
    """benchmarks/chat_baseline.py on a free port with the api's environment (same database, Redis prefix, JWT
    secret), ready."""
    port = free_port()
    env = {**server.env, "PORT": str(port), "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"}
    log_path = bench.workdir / "baseline.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [h.PYTHON, str(Path(__file__).resolve().parent / "chat_baseline.py")],
            env=env,
            cwd=h.REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    bench.defer("baseline server", lambda: h.stop_server(process))
    base_url = f"http://127.0.0.1:{port}"
    h.wait_ready(base_url, process, 1, log_path)
    return BaselineServer(process, base_url)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rates", default="100,600", help="offered messages/s of the many-chats latency phases (comma list)"
    )
    parser.add_argument(
        "--one-chat-rates",
        default="100,300",
        help="offered messages/s of the one-chat latency phases (comma list; empty: none); each of the "
        "--solo-sockets stays under the 30 frames/s a socket may send",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per latency phase")
    parser.add_argument("--chats", type=int, default=64, help="chats (and sender users) of the many-chats phases")
    parser.add_argument("--receivers", type=int, default=8, help="receiver users of the many chats")
    parser.add_argument(
        "--solo-sockets", type=int, default=16, help="sender sockets of the one chat (at most 20 per user)"
    )
    parser.add_argument("--inflight", type=int, default=32, help="sends in flight in the throughput phases")
    parser.add_argument("--tput-seconds", type=float, default=10.0, help="seconds per throughput phase")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="idle CPU baseline, before any phase")
    parser.add_argument("--drain-timeout", type=float, default=150.0, help="seconds to wait for a phase's acks")
    parser.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="then the same phases against benchmarks/chat_baseline.py (one process, no Ray) and our figures as a "
        "ratio of its (default: on)",
    )
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    args = h.parse_args(parser, SMOKE)
    if args.receiver:
        uvloop.run(
            receiver(
                os.environ["BENCH_WS_URL"], json.loads(os.environ["BENCH_WS_TOKENS"]), os.environ["BENCH_WS_AVOID"]
            )
        )
        return 0
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    args.one_chat_rates = [float(r) for r in args.one_chat_rates.split(",") if r.strip()]

    with h.Bench("chat", smoke=args.smoke) as bench:
        dsn = bench.database()
        prefix = bench.redis_prefix()
        head = bench.ray_head(num_cpus=2)
        extra = {"WORKERS": "2", "RATE_LIMITS": RATE_LIMITS, "ACCESS_TOKEN_TTL": "3600"}
        server = bench.server(dsn, prefix, head, extra)
        bench.ray_driver(head)
        results = uvloop.run(run(bench, server, head, args))
        problems = h.log_summary(server.log_path)

    report(results, problems)
    return 0


PATHS = {
    "ws": "chat.send frames over the sockets",
    "http": "HTTP via the api",
    "shard": "ShardClient -> ChatShard (no HTTP)",
}
# Issue 21's targets: p99 at an offered rate (ms), and server CPU per message at 300/s (ms).
TARGET_P99_BY_RATE = {100.0: 20.0, 600.0: 50.0}
TARGET_CPU_MS_AT_300 = 3.0
TARGET_BASELINE_RATIO = 0.6


def report(results: dict[str, Any], problems: list[str]) -> None:
    h.say()
    h.say(f"# {h.command_line()}")
    ours = results["ours"]
    report_target(ours, "Send (socket, gateway A) -> chat.message on the peer's socket (gateway B), open loop:")
    base = results.get("baseline")
    if base is not None:
        h.say()
        h.say("BASELINE: benchmarks/chat_baseline.py, one process without Ray (the same users, chats and clients)")
        report_target(base, "Baseline: send (socket) -> chat.message on the peer's socket (same process), open loop:")
        report_ratios(ours, base)
    h.say()
    for r in ours["latency"]:
        target = TARGET_P99_BY_RATE.get(r["rate"], TARGET_P99_MS)
        verdict = "met" if r["p99"] <= target and r["lost"] == 0 else "MISSED"
        h.say(f"{r['label']} @ {r['rate']:.0f}/s: target p99 <= {target:.0f} ms and no loss: {verdict}")
        if r["rate"] == 300.0:
            cpu_ms = 1e3 * server_total(r["cpu"]) / max(1, r["count"])
            verdict = "met" if cpu_ms <= TARGET_CPU_MS_AT_300 else "MISSED"
            h.say(f"{r['label']} @ 300/s: server CPU {cpu_ms:.2f} ms per message, target <= 3 ms: {verdict}")
    h.say("server log warnings/errors: " + ("; ".join(problems) if problems else "none"))


def report_target(results: dict[str, Any], title: str) -> None:
    h.say(title)
    rows = []
    for r in results["latency"]:
        rows.append(
            [
                r["label"],
                f"{r['count']:,} @ {r['rate']:.0f}/s",
                r["sockets"],
                r["achieved_rate"],
                r["p50"],
                r["p90"],
                r["p99"],
                r["max"],
                r["ack_p50"],
                r["ack_p99"],
                f"{r['lost']} lost, {r['no_ack']} unacked, {sum(r['errors'].values())} errors",
                f"{r['out_of_order']} / {r['seq_gaps']}",
                r["drained_s"],
            ]
        )
    h.say(
        h.table(
            [
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
            ],
            rows,
        )
    )
    for r in results["latency"]:
        if r["errors"]:
            h.say(f"  errors {r['label']} @ {r['rate']:.0f}/s: {r['errors']}")
    h.say()
    h.say("Throughput, closed loop:")
    rows = []
    for r in results["throughput"]:
        rows.append(
            [
                PATHS[r["via"]],
                r["label"],
                r["inflight"],
                r["messages"],
                r["rate"],
                r["p50"],
                r["p99"],
                r["recv_p99"],
                ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items(), key=str)),
                f"{r['lost']} lost, {r['out_of_order']} out of order, {r['seq_gaps']} gaps",
            ]
        )
    h.say(
        h.table(
            [
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
            ],
            rows,
        )
    )
    h.say()
    h.say(
        "CPU per message (microseconds of user+system per message sent; cores = CPU s / wall s; 2 cores; server "
        "total = " + " + ".join(k for k in SERVER_TOTAL if k in results["idle"]) + ", not ray other):"
    )
    phases = [
        (f"latency {r['label']} @ {r['rate']:.0f}/s", r["cpu"], r["count"], r["wall"]) for r in results["latency"]
    ]
    phases += [(f"{r['via']} {r['label']}", r["cpu"], r["messages"], r["wall"]) for r in results["throughput"]]
    names = list(phases[0][1]) if phases else []
    h.say(
        h.table(
            ["phase", *names, "server total", "server cores"],
            [
                [
                    label,
                    *(1e6 * cpu[k] / max(1, count) for k in names),
                    1e6 * server_total(cpu) / max(1, count),
                    server_total(cpu) / wall,
                ]
                for label, cpu, count, wall in phases
            ],
        )
    )
    idle = results["idle"]
    h.say()
    h.say("The same net of the idle baseline (each group's idle cores x the phase's wall time subtracted):")
    h.say(
        h.table(
            ["phase", *names, "server total"],
            [
                [
                    label,
                    *(1e6 * (cpu[k] - idle[k] * wall) / max(1, count) for k in names),
                    1e6 * server_total({k: cpu[k] - idle[k] * wall for k in names}) / max(1, count),
                ]
                for label, cpu, count, wall in phases
            ],
        )
    )
    h.say(f"idle cores: {', '.join(f'{k} {v:.3f}' for k, v in idle.items())}; niceness: {results['niceness']}")
    h.say(f"(sender sockets also got {results['echoes']:,} chat.message echoes: the sender's own devices)")


def report_ratios(ours: dict[str, Any], base: dict[str, Any]) -> None:
    """Each phase the two runs share: our messages/s and server CPU per message against the baseline's."""
    rows = []
    pairs = [
        (f"latency {a['label']} @ {a['rate']:.0f}/s", a, b, a["achieved_rate"], b["achieved_rate"], "count")
        for a in ours["latency"]
        for b in base["latency"]
        if (a["label"], a["rate"]) == (b["label"], b["rate"])
    ]
    pairs += [
        (f"{a['via']} {a['label']} (closed loop)", a, b, a["rate"], b["rate"], "messages")
        for a in ours["throughput"]
        for b in base["throughput"]
        if (a["via"], a["label"]) == (b["via"], b["label"])
    ]
    for label, a, b, rate_a, rate_b, n in pairs:
        p99 = "p99" if n == "count" else "recv_p99"  # closed loop: send -> peer socket
        cpu_a = 1e6 * server_total(a["cpu"]) / max(1, a[n])
        cpu_b = 1e6 * server_total(b["cpu"]) / max(1, b[n])
        rows.append(
            [
                label,
                rate_a,
                rate_b,
                round(rate_a / rate_b, 3) if rate_b else float("nan"),
                cpu_a,
                cpu_b,
                round(cpu_b / cpu_a, 3) if cpu_a else float("nan"),
                a[p99],
                b[p99],
            ]
        )
    h.say()
    h.say(
        "Ours against the one-process baseline (server CPU per message: ours api workers + shards + postgres + "
        "redis, the baseline's process + postgres + redis; the closed-loop rows are the throughput ratio, target "
        f">= {TARGET_BASELINE_RATIO}, the sockets' rows first of all):"
    )
    h.say(
        h.table(
            [
                "phase",
                "ours messages/s",
                "baseline messages/s",
                "messages/s ours / baseline",
                "ours server CPU us/msg",
                "baseline server CPU us/msg",
                "CPU/msg baseline / ours",
                "ours send->peer p99 ms",
                "baseline send->peer p99 ms",
            ],
            rows,
        )
    )
    for label, a, _b, rate_a, rate_b, _n in pairs:
        if a.get("via") == "ws":
            ratio = rate_a / rate_b if rate_b else float("nan")
            verdict = "met" if ratio >= TARGET_BASELINE_RATIO else "MISSED"
            h.say(f"{label}: ours / baseline messages/s {ratio:.2f}, target >= {TARGET_BASELINE_RATIO}: {verdict}")


if __name__ == "__main__":
    raise SystemExit(main())
