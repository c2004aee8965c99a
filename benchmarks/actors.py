"""Why logical actors in shards, not one Ray actor per user.

Part 1: create N plain Ray actors (a trivial async actor, one method, num_cpus=0) and wait until every one has
answered one call; measure the time and the memory of their worker processes (RSS, PSS, USS from
/proc/<pid>/smaps_rollup) and the drop in the machine's available memory. Actors are created in waves, and
before each creation the machine's available memory is checked (minus what the actors of the current wave will
take): creation stops below ``--floor-gib`` (default 6 GiB), and the rest is extrapolated, labelled as such.

Part 2: one UserShardCore-like shard (a Ray actor holding ``actors.runtime.shards.UserShardCore``, whose entity table is
``EntityTable[UserState]``) activates 100,000 logical users; its process memory before and after, and the time
per activation. Twice: idle users (username loaded) and online users (one socket each in their presence).

    .venv/bin/python benchmarks/actors.py [--counts 100,500] [--users 100000] [--floor-gib 6] [--smoke]
"""

from __future__ import annotations

import os
import sys

# This file's name would shadow the `actors` package (here, and in Ray workers, to which Ray hands the script's
# directory): import from the repository root instead.
sys.path.remove(os.path.dirname(os.path.realpath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import contextlib
import gc
import time
from typing import Any

import psutil
import ray

from benchmarks import _harness as h

WAVE = 20  # actors started together; the next wave starts when all of this one answered
SMOKE = {"counts": "2", "users": 2000}


@ray.remote(num_cpus=0)
class Tiny:
    """A per-user actor at its smallest: one async method."""

    async def ping(self) -> int:
        return os.getpid()


@ray.remote(num_cpus=0)
class ShardProbe:
    """A shard process hosting logical users: the real UserShardCore and its EntityTable[UserState].

    No database or Redis is touched: activation here is creating the entity and running one op under its lock,
    with the state a loaded user has (the username; for "online", one socket in its presence)."""

    def __init__(self) -> None:
        from actors.runtime.shards import UserShardCore
        from storage.config import Settings

        self.core = UserShardCore(0, Settings())

    async def memory(self) -> dict[str, Any]:
        gc.collect()
        mem = h.process_memory(os.getpid())
        return {"pid": os.getpid(), "rss": mem.rss, "pss": mem.pss, "uss": mem.uss, "entities": len(self.core.table)}

    async def activate(self, first: int, count: int, online: bool) -> float:
        async def load(state: Any) -> None:
            state.username = f"user{state.user_id}"
            state.loaded = True
            if online:
                state.presence.add("gw0123456789", f"{state.user_id:016x}", 1)

        started = time.perf_counter()
        for user_id in range(first, first + count):
            await self.core.table.run(user_id, load)
        return time.perf_counter() - started


def create_actors(n: int, floor: int, head: Any, settle: float = 2.0) -> dict[str, Any]:
    """Create up to ``n`` Tiny actors in waves, each wave waiting for all its pings; stop above the floor.
    ``settle``: seconds of quiet before the baseline (and half of it before the measurement)."""
    gc.collect()
    time.sleep(settle)
    baseline_pids = set(h.ray_worker_pids(head))
    available_before = h.available_memory()
    actors: list[Any] = []
    pids: list[int] = []
    per_actor_guess = 80 * h.MIB  # until measured: generous, so that the first wave cannot overshoot
    stopped = ""
    started = time.perf_counter()
    while len(actors) < n and not stopped:
        wave: list[Any] = []
        for _ in range(min(WAVE, n - len(actors))):
            headroom = h.available_memory() - len(wave) * per_actor_guess
            if headroom < floor:
                stopped = f"available memory {headroom / h.GIB:.1f} GiB (after this wave) is below the floor"
                break
            wave.append(Tiny.remote())
        if wave:
            pids += ray.get([a.ping.remote() for a in wave], timeout=300)
            actors += wave
            used = available_before - h.available_memory()
            per_actor_guess = max(40 * h.MIB, used // len(actors))
    elapsed = time.perf_counter() - started
    time.sleep(settle / 2)
    available_after = h.available_memory()
    mem = h.memory_of(pids)
    result = {
        "target": n,
        "created": len(actors),
        "seconds": elapsed,
        "mem": mem,
        "available_drop": available_before - available_after,
        "stopped": stopped,
        "new_worker_pids": len(set(h.ray_worker_pids(head)) - baseline_pids),
    }
    for actor in actors:
        ray.kill(actor, no_restart=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in pids):
        time.sleep(0.5)
    left = [p for p in pids if psutil.pid_exists(p)]
    for pid in left:  # our own actors' workers only, by pid
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()
    return result


def shard_probe(users: int, online: bool) -> dict[str, Any]:
    probe = ShardProbe.remote()
    before = ray.get(probe.memory.remote(), timeout=120)
    seconds = ray.get(probe.activate.remote(1, users, online), timeout=600)
    after = ray.get(probe.memory.remote(), timeout=120)
    ray.kill(probe, no_restart=True)
    return {"before": before, "after": after, "seconds": seconds, "users": users, "online": online}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="100,500", help="numbers of plain Ray actors to create (comma list)")
    parser.add_argument("--users", type=int, default=100_000, help="logical users activated in one shard")
    parser.add_argument("--floor-gib", type=float, default=6.0, help="stop creating actors below this available")
    args = h.parse_args(parser, SMOKE)
    counts = [int(c) for c in args.counts.split(",") if c]
    floor = int(args.floor_gib * h.GIB)

    with h.Bench("actors", smoke=args.smoke) as bench:
        head = bench.ray_head(num_cpus=2)
        bench.ray_driver(head)
        h.say(
            f"# machine: {psutil.cpu_count()} cpus, {psutil.virtual_memory().total / h.GIB:.1f} GiB total, "
            f"{h.available_memory() / h.GIB:.1f} GiB available at start"
        )

        runs = []
        for n in counts:
            h.say(f"# creating {n} plain Ray actors ...")
            runs.append(create_actors(n, floor, head, settle=0.2 if args.smoke else 2.0))
            r = runs[-1]
            h.say(f"#   created {r['created']} in {r['seconds']:.1f}s {r['stopped']}")

        probes = []
        for online in (False, True):
            h.say(f"# activating {args.users} logical users in one shard (online={online}) ...")
            probes.append(shard_probe(args.users, online))

    rows = []
    for r in runs:
        k = max(1, r["created"])
        mem = r["mem"]
        rows.append(
            [
                f"{r['target']} Ray actors",
                r["created"],
                r["seconds"],
                r["created"] / r["seconds"] if r["seconds"] else 0.0,
                mem.rss / k / h.MIB,
                mem.pss / k / h.MIB,
                mem.uss / k / h.MIB,
                r["available_drop"] / k / h.MIB,
                mem.rss / h.GIB,
                r["available_drop"] / h.GIB,
            ]
        )
    h.say()
    h.say(f"# {h.command_line()}")
    h.say("## Plain Ray actors (one per user)")
    h.say(
        h.table(
            [
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
            ],
            rows,
        )
    )
    for r in runs:
        if r["created"] < r["target"]:
            k = max(1, r["created"])
            factor = r["target"] / k
            h.say(
                f"EXTRAPOLATED to {r['target']} (only {r['created']} created: {r['stopped']}): "
                f"sum RSS {r['mem'].rss * factor / h.GIB:.1f} GiB, sum PSS {r['mem'].pss * factor / h.GIB:.1f} GiB, "
                f"sum USS {r['mem'].uss * factor / h.GIB:.1f} GiB, available-memory drop "
                f"{r['available_drop'] * factor / h.GIB:.1f} GiB, creation {r['seconds'] * factor:.0f} s"
            )

    h.say()
    h.say(f"## One shard hosting {args.users:,} logical users (UserShardCore + EntityTable[UserState])")
    prow = []
    for p in probes:
        b, a = p["before"], p["after"]
        n = p["users"]
        prow.append(
            [
                "online (1 socket)" if p["online"] else "idle (loaded)",
                a["entities"],
                b["rss"] / h.MIB,
                a["rss"] / h.MIB,
                (a["rss"] - b["rss"]) / n,
                (a["uss"] - b["uss"]) / n,
                p["seconds"] / n * 1e6,
            ]
        )
    h.say(
        h.table(
            ["users", "entities", "shard RSS before MiB", "after MiB", "RSS B/user", "USS B/user", "us/activation"],
            prow,
        )
    )
    if runs and probes:
        r = runs[0]
        per_actor = r["mem"].uss / max(1, r["created"])
        per_user = max(1.0, (probes[0]["after"]["uss"] - probes[0]["before"]["uss"]) / probes[0]["users"])
        h.say(
            f"Ratio (USS): one Ray actor costs {per_actor / h.MIB:.1f} MiB, one logical user "
            f"{per_user:.0f} B: {per_actor / per_user:,.0f}x. "
            f"100,000 users as Ray actors would need ~{per_actor * 100_000 / h.GIB:,.0f} GiB (extrapolated)."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
