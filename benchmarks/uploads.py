"""Media uploads through the real server and the local backend: throughput, and flat memory for a 100 MB body.

Starts ``python -m api`` (2 worker processes, log level WARNING, the write limit raised for the run) with its own
database, Redis prefix and Ray head (``benchmarks/_harness.py``), signs one user up through the real flow, and
uploads as a client does: ``POST /api/v1/media`` (declare), the bytes with ``upload.method`` to ``upload.url``
with exactly ``upload.headers`` (local backend: a PUT on this api, streamed to disk), ``POST .../complete``.

* 1 MiB ``application/octet-stream`` files for ``chat``, sequentially and with ``--concurrency`` in flight: the PUT
  alone (declared beforehand, completed afterwards, untimed) and the whole declare + PUT + complete journey, in
  uploads/s and MB/s (MB = 2^20 bytes), with the api workers' CPU time per upload (user + system, /proc).
* ``--large-n`` 100 MiB ``video/mp4`` files for ``post`` (ftyp, an mdat of padding, moov/mvhd at the end, as
  tests/media_samples.py ``mp4`` builds them), sent as an async generator of 1 MiB chunks so that this client
  never holds the body either (httpx sends it chunked). Both api workers' RSS is sampled every 50 ms (psutil)
  for a second before each upload and throughout it: the peak during the upload minus the peak before it shows
  whether the server buffers the body. Then the latency of its ``complete`` (size, magic bytes, duration from
  moov/mvhd by ranged reads, a rename).
* The ``complete`` latency of a ~5 MB, 12-megapixel JPEG for ``post`` (Pillow decode, re-encode without
  metadata, blurhash, thumbnail), with the workers' RSS peak during it and half a second after it.

    .venv/bin/python benchmarks/uploads.py [--small-n 48] [--concurrency 8] [--large-n 3] [--jpeg-n 3] [--smoke]

Every answer's status is checked (declare 201, PUT 204, complete 200); one download of each kind is compared
byte for byte (the 100 MiB one by size and by a streamed hash).
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
import hashlib
import io
import random
import statistics
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
from PIL import Image

from benchmarks import _harness as h

MIB = h.MIB
SMALL = MIB
LARGE = 100 * MIB
CHUNK = MIB
SAMPLE_S = 0.05
DURATION_MS = 61_000
BATCH = 40  # declared-but-not-complete uploads at once (the server allows 50 pending per user)
SMOKE = {"small_n": 4, "concurrency": 2, "large_n": 1, "jpeg_n": 1}


# ---------------------------------------------------------------- bodies


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def mp4_parts(size: int, duration_ms: int = DURATION_MS) -> Iterator[bytes]:
    """An MP4 of exactly ``size`` bytes, in pieces of at most 1 MiB: ftyp, mdat (zeros), moov/mvhd at the end."""
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2mp41")
    mvhd = _box(b"mvhd", bytes(4) + struct.pack(">III", 0, 0, 1000) + struct.pack(">I", duration_ms) + bytes(80))
    moov = _box(b"moov", mvhd)
    padding = size - len(ftyp) - 8 - len(moov)
    yield ftyp + struct.pack(">I4s", 8 + padding, b"mdat")
    zeros = bytes(CHUNK)
    while padding > 0:
        n = min(CHUNK, padding)
        yield zeros if n == CHUNK else zeros[:n]
        padding -= n
    yield moov


async def streamed(size: int) -> AsyncIterator[bytes]:
    for part in mp4_parts(size):
        yield part


def mp4_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for part in mp4_parts(size):
        digest.update(part)
    return digest.hexdigest()


def photo_jpeg(width: int = 4000, height: int = 3000, amplitude: int = 56) -> bytes:
    """A 12-megapixel JPEG of about 5 MB (a gradient with seeded noise, quality 90), like a phone's photo."""
    base = Image.linear_gradient("L").resize((width, height))
    flipped = base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    gradient = Image.merge("RGB", (base, base.transpose(Image.Transpose.ROTATE_180), flipped))
    noise = Image.frombytes("RGB", (width, height), random.Random(9).randbytes(width * height * 3))
    out = io.BytesIO()
    Image.blend(gradient, noise, amplitude / 255).save(out, "JPEG", quality=90)
    return out.getvalue()


# ---------------------------------------------------------------- memory sampling


class RssSampler:
    """Each worker's RSS every 50 ms in a thread, between ``start()`` and ``stop()``; ``peaks()`` per pid."""

    def __init__(self, pids: list[int]) -> None:
        self.processes = {pid: psutil.Process(pid) for pid in pids}
        self.samples: dict[int, list[int]] = {pid: [] for pid in pids}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while True:
            for pid, process in self.processes.items():
                with contextlib.suppress(psutil.Error):
                    self.samples[pid].append(process.memory_info().rss)
            if self._stop.wait(SAMPLE_S):
                return

    def start(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> RssSampler:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self

    def peaks(self) -> dict[int, int]:
        return {pid: max(values, default=0) for pid, values in self.samples.items()}

    def count(self) -> int:
        return min(len(v) for v in self.samples.values())


async def sampled_before(pids: list[int], seconds: float = 1.0) -> RssSampler:
    sampler = RssSampler(pids).start()
    await asyncio.sleep(seconds)
    return sampler.stop()


# ---------------------------------------------------------------- the client


class Client:
    def __init__(self, base_url: str, token: str, workers: list[psutil.Process]) -> None:
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        self.api = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=600, limits=limits
        )
        self.bytes = httpx.AsyncClient(timeout=600, limits=limits)  # uploads carry only upload.headers
        self.workers = workers
        self.statuses: dict[str, dict[int, int]] = {}

    async def aclose(self) -> None:
        await self.api.aclose()
        await self.bytes.aclose()

    def _check(self, step: str, reply: httpx.Response, expected: int) -> None:
        counts = self.statuses.setdefault(step, {})
        counts[reply.status_code] = counts.get(reply.status_code, 0) + 1
        if reply.status_code != expected:
            raise RuntimeError(f"{step}: {reply.status_code} (expected {expected}): {reply.text[:500]}")

    async def declare(self, purpose: str, ctype: str, size: int) -> dict[str, Any]:
        reply = await self.api.post("/api/v1/media", json={"purpose": purpose, "content_type": ctype, "size": size})
        self._check("declare", reply, 201)
        made: dict[str, Any] = reply.json()
        return made

    async def put(self, made: dict[str, Any], content: Any) -> float:
        upload = made["upload"]
        started = time.perf_counter()
        reply = await self.bytes.request(upload["method"], upload["url"], content=content, headers=upload["headers"])
        spent = time.perf_counter() - started
        self._check("put", reply, 204)
        return spent

    async def complete(self, made: dict[str, Any]) -> tuple[dict[str, Any], float]:
        started = time.perf_counter()
        reply = await self.api.post(f"/api/v1/media/{made['media_id']}/complete")
        spent = time.perf_counter() - started
        self._check("complete", reply, 200)
        media: dict[str, Any] = reply.json()
        return media, spent

    async def download(self, url: str) -> tuple[int, str]:
        digest = hashlib.sha256()
        size = 0
        async with self.api.stream("GET", url) as reply:
            self._check("download", reply, 200)
            async for chunk in reply.aiter_bytes(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return size, digest.hexdigest()


async def bounded(concurrency: int, jobs: list[Any]) -> list[Any]:
    slots = asyncio.Semaphore(concurrency)

    async def one(job: Any) -> Any:
        async with slots:
            return await job()

    return await asyncio.gather(*(one(job) for job in jobs))


def cpu_of(workers: list[psutil.Process]) -> float:
    return h.cpu_seconds(workers)


def client_cpu() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


# ---------------------------------------------------------------- 1 MiB files


async def small_put_alone(client: Client, data: bytes, n: int, concurrency: int) -> dict[str, Any]:
    """Declared beforehand and completed afterwards (untimed); only the PUTs are timed, ``concurrency`` at once."""
    wall = 0.0
    cpu = 0.0
    ccpu = 0.0
    latencies: list[float] = []
    done = 0
    while done < n:
        batch = min(BATCH, n - done)
        made = [await client.declare("chat", "application/octet-stream", len(data)) for _ in range(batch)]
        cpu0, ccpu0, t0 = cpu_of(client.workers), client_cpu(), time.perf_counter()
        latencies += await bounded(concurrency, [lambda m=m: client.put(m, data) for m in made])
        wall += time.perf_counter() - t0
        cpu += cpu_of(client.workers) - cpu0
        ccpu += client_cpu() - ccpu0
        for m in made:
            await client.complete(m)
        done += batch
    return {"wall": wall, "cpu": cpu, "client_cpu": ccpu, "latencies": sorted(latencies)}


async def small_journeys(client: Client, data: bytes, n: int, concurrency: int) -> dict[str, Any]:
    async def journey() -> float:
        started = time.perf_counter()
        made = await client.declare("chat", "application/octet-stream", len(data))
        await client.put(made, data)
        await client.complete(made)
        return time.perf_counter() - started

    cpu0, ccpu0, t0 = cpu_of(client.workers), client_cpu(), time.perf_counter()
    latencies = await bounded(concurrency, [journey] * n)
    return {
        "wall": time.perf_counter() - t0,
        "cpu": cpu_of(client.workers) - cpu0,
        "client_cpu": client_cpu() - ccpu0,
        "latencies": sorted(latencies),
    }


def small_row(what: str, concurrency: int, n: int, size: int, res: dict[str, Any]) -> list[Any]:
    lat = res["latencies"]
    return [
        what,
        concurrency,
        n,
        round(n / res["wall"], 1),
        round(n * size / MIB / res["wall"], 1),
        round(h.percentile(lat, 50) * 1000, 1),
        round(h.percentile(lat, 99) * 1000, 1),
        round(1000 * res["cpu"] / n, 2),
        round(1000 * res["client_cpu"] / n, 2),
    ]


# ---------------------------------------------------------------- 100 MiB files and the JPEG


async def large_upload(client: Client, pids: list[int], size: int) -> dict[str, Any]:
    made = await client.declare("post", "video/mp4", size)
    before = await sampled_before(pids)
    client_before = psutil.Process().memory_info().rss
    during = RssSampler(pids).start()
    cpu0, ccpu0 = cpu_of(client.workers), client_cpu()
    put_s = await client.put(made, streamed(size))
    cpu, ccpu = cpu_of(client.workers) - cpu0, client_cpu() - ccpu0
    during.stop()
    client_peak = psutil.Process().memory_info().rss
    completing = RssSampler(pids).start()
    media, complete_s = await client.complete(made)
    completing.stop()
    if media["size"] != size or media.get("duration_ms") != DURATION_MS or media["kind"] != "video":
        raise RuntimeError(f"unexpected media after a {size}-byte mp4: {media}")
    return {
        "media": media,
        "put_s": put_s,
        "complete_s": complete_s,
        "cpu": cpu,
        "client_cpu": ccpu,
        "before": before.peaks(),
        "during": during.peaks(),
        "completing": completing.peaks(),
        "samples": during.count(),
        "client_delta": client_peak - client_before,
    }


async def jpeg_complete(client: Client, pids: list[int], data: bytes) -> dict[str, Any]:
    made = await client.declare("post", "image/jpeg", len(data))
    await client.put(made, data)
    before = await sampled_before(pids, 0.5)
    completing = RssSampler(pids).start()
    cpu0 = cpu_of(client.workers)
    media, complete_s = await client.complete(made)
    cpu = cpu_of(client.workers) - cpu0
    completing.stop()
    after = await sampled_before(pids, 0.5)
    if media["kind"] != "image" or (media["width"], media["height"]) != (4000, 3000):
        raise RuntimeError(f"unexpected media after a 4000x3000 JPEG: {media}")
    return {
        "media": media,
        "complete_s": complete_s,
        "cpu": cpu,
        "before": before.peaks(),
        "completing": completing.peaks(),
        "after": after.peaks(),
    }


def mb(value: float) -> float:
    return round(value / MIB, 1)


# ---------------------------------------------------------------- the run


async def run(server: h.Server, token: str, args: argparse.Namespace) -> None:
    pids = server.worker_pids
    workers = [psutil.Process(pid) for pid in pids]
    client = Client(server.base_url, token, workers)
    try:
        data = random.Random(1).randbytes(SMALL)
        # Warm both workers (imports, pools) and check one download byte for byte.
        for _ in range(4):
            made = await client.declare("chat", "application/octet-stream", len(data))
            await client.put(made, data)
            media, _ = await client.complete(made)
        size, digest = await client.download(media["url"])
        assert (size, digest) == (len(data), hashlib.sha256(data).hexdigest()), (size, digest)

        rows = []
        for concurrency in (1, args.concurrency):
            alone = await small_put_alone(client, data, args.small_n, concurrency)
            rows.append(small_row("PUT alone", concurrency, args.small_n, SMALL, alone))
            journeys = await small_journeys(client, data, args.small_n, concurrency)
            rows.append(small_row("declare + PUT + complete", concurrency, args.small_n, SMALL, journeys))
        h.say()
        h.say("1 MiB application/octet-stream for chat:")
        h.say(
            h.table(
                [
                    "what",
                    "in flight",
                    "uploads",
                    "uploads/s",
                    "MB/s",
                    "p50 ms",
                    "p99 ms",
                    "worker CPU ms/upload",
                    "client CPU ms/upload",
                ],
                rows,
            )
        )

        large_rows = []
        last: dict[str, Any] = {}
        for i in range(1, args.large_n + 1):
            res = await large_upload(client, pids, LARGE)
            last = res
            row: list[Any] = [
                i,
                round(LARGE / MIB / res["put_s"], 1),
                round(res["put_s"], 2),
                round(1000 * res["cpu"] / (LARGE / MIB), 2),
                round(1000 * res["client_cpu"] / (LARGE / MIB), 2),
            ]
            for pid in pids:
                row += [mb(res["before"][pid]), mb(res["during"][pid] - res["before"][pid])]
            row += [
                "/".join(str(mb(res["completing"][pid] - res["before"][pid])) for pid in pids),
                res["samples"],
                mb(res["client_delta"]),
                round(res["complete_s"] * 1000, 1),
            ]
            large_rows.append(row)
        size, digest = await client.download(last["media"]["url"])
        assert (size, digest) == (LARGE, mp4_sha256(LARGE)), (size, digest)
        h.say()
        h.say(f"100 MiB video/mp4 for post, streamed in 1 MiB chunks (workers {pids[0]} and {pids[1]}):")
        headers = ["#", "PUT MB/s", "PUT s", "worker CPU ms/MB", "client CPU ms/MB"]
        for pid in pids:
            headers += [f"{pid} RSS before MB", f"{pid} peak delta MB"]
        headers += ["complete peak delta MB", "RSS samples", "client RSS delta MB", "complete ms"]
        h.say(h.table(headers, large_rows))

        photo = photo_jpeg()
        jpeg_rows = []
        for i in range(1, args.jpeg_n + 1):
            res = await jpeg_complete(client, pids, photo)
            jpeg_rows.append(
                [
                    i,
                    round(len(photo) / MIB, 2),
                    round(res["complete_s"] * 1000, 1),
                    round(res["cpu"] * 1000, 1),
                    "/".join(str(mb(res["before"][pid])) for pid in pids),
                    "/".join(str(mb(res["completing"][pid])) for pid in pids),
                    "/".join(str(mb(res["after"][pid])) for pid in pids),
                    res["media"]["size"],
                ]
            )
        h.say()
        h.say("complete of a 4000x3000 JPEG for post (decode, re-encode without metadata, blurhash, thumbnail):")
        h.say(
            h.table(
                [
                    "#",
                    "upload MB",
                    "complete ms",
                    "worker CPU ms",
                    f"RSS before MB ({pids[0]}/{pids[1]})",
                    "RSS peak MB",
                    "RSS 0.5 s after MB",
                    "stored bytes",
                ],
                jpeg_rows,
            )
        )
        video_ms = sorted(r[-1] for r in large_rows)
        jpeg_ms = sorted(r[2] for r in jpeg_rows)
        h.say()
        h.say(
            h.table(
                ["complete of", "median ms", "min ms", "max ms"],
                [
                    ["100 MiB video/mp4 (ranged reads)", statistics.median(video_ms), video_ms[0], video_ms[-1]],
                    [
                        f"{len(photo) / MIB:.1f} MiB 12 MP image/jpeg (re-encode)",
                        statistics.median(jpeg_ms),
                        jpeg_ms[0],
                        jpeg_ms[-1],
                    ],
                ],
            )
        )
        h.say(f"# statuses: {client.statuses}")
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small-n", type=int, default=48, help="1 MiB uploads per measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="uploads in flight in the concurrent rows")
    parser.add_argument("--large-n", type=int, default=3, help="100 MiB uploads, one after the other")
    parser.add_argument("--jpeg-n", type=int, default=3, help="completes of the ~5 MB JPEG")
    args = h.parse_args(parser, SMOKE)

    with h.Bench("uploads", smoke=args.smoke) as bench:
        dsn = bench.database()
        prefix = bench.redis_prefix()
        head = bench.ray_head(num_cpus=2)
        extra = {"RATE_LIMITS": "write=1000000/60", "ACCESS_TOKEN_TTL": "3600"}
        server = bench.server(dsn, prefix, head, extra)
        h.say(f"# api workers {server.worker_pids}; media under {Path(server.env['VAR_DIR']) / 'media'}")
        user = asyncio.run(h.signup(server.base_url, Path(server.env["VAR_DIR"]) / "mail", f"bench{os.getpid()}"))
        asyncio.run(run(server, user.access_token, args))
        for line in h.log_summary(server.log_path):
            h.say(f"# server log: {line}")


if __name__ == "__main__":
    main()
