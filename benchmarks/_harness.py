"""Shared setup for the benchmarks: everything a run needs is made here and taken down at the end.

``Bench`` owns one run's throwaway resources and removes them in reverse order on exit (also on Ctrl-C and
SIGTERM): a database ``i9bench_<id>`` (created and migrated by ``python -m storage.migrate``, dropped WITH
(FORCE)), a Redis key prefix ``i9bench:<id>:`` (its keys deleted), a private Ray head on free 127.0.0.1 ports
(``actors.runtime.cluster.start_head``, its process group stopped) and ``python -m api`` with the environment the test
suite uses (tests/conftest.py ``_server_env``). Traffic goes to 127.0.0.1 only.

Every script also runs at smoke scale (``--smoke``, ``parse_args`` below): the same code paths at a tiny scale, in
seconds, printing the same tables; ``make test`` runs each so (tests/benchmarks/test_smoke.py). That proves a
script still runs; its figures are not measurements.

Scripts import this module as ``benchmarks._harness`` after taking ``benchmarks/`` off ``sys.path``:
``benchmarks/actors.py`` would otherwise shadow the ``actors`` package, in the script and (because Ray hands the
driver's script directory to its workers) in every Ray worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import json
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]  # no stubs installed
import redis as sync_redis

from actors.runtime.cluster import RayHead, free_port, loopback_env, start_head
from storage.config import Settings

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ADMIN_DSN = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
JWT_SECRET = "bench-secret-" + "b" * 40
GIB = 1024**3
MIB = 1024**2


# ---------------------------------------------------------------- output


def command_line() -> str:
    """The exact command that ran this benchmark, relative to the repository."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(REPO)
    return shlex.join([".venv/bin/python", str(script), *sys.argv[1:]])


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (pastes into docs/PERFORMANCE.md as is)."""
    cells = [[str(h) for h in headers], *[[_fmt(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def say(*parts: Any) -> None:
    print(*parts, flush=True)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return float(sorted_values[rank - 1])


# ---------------------------------------------------------------- smoke scale

SMOKE_HELP = (
    "smoke scale: the same code paths at a tiny scale, in seconds, printing the same tables (make test runs every "
    "benchmark so); it proves the script still runs, its figures are not measurements"
)
# Each shard is a Ray worker process that takes about a second of CPU to start: at smoke scale the server runs
# with fewer (still two UserShards, so that users are routed over more than one).
SMOKE_USER_SHARDS = 2
SMOKE_CHAT_SHARDS = 1


def parse_args(parser: argparse.ArgumentParser, smoke: dict[str, Any]) -> argparse.Namespace:
    """``parser.parse_args()`` with one more flag, ``--smoke``: then the values in ``smoke`` (by the flags' dest
    names) replace those flags' defaults; a flag given on the command line still wins. Without ``--smoke`` every
    flag and default is the parser's own."""
    dests = {action.dest for action in parser._actions}
    unknown = sorted(set(smoke) - dests)
    if unknown:
        raise ValueError(f"smoke scale names flags the parser does not have: {unknown}")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    if parser.parse_known_args()[0].smoke:
        parser.set_defaults(**smoke)
    return parser.parse_args()


# ---------------------------------------------------------------- memory


@dataclass(frozen=True)
class Mem:
    rss: int
    pss: int
    uss: int

    def __add__(self, other: Mem) -> Mem:
        return Mem(self.rss + other.rss, self.pss + other.pss, self.uss + other.uss)

    def __sub__(self, other: Mem) -> Mem:
        return Mem(self.rss - other.rss, self.pss - other.pss, self.uss - other.uss)


ZERO = Mem(0, 0, 0)


def process_memory(pid: int) -> Mem:
    """RSS, PSS and USS (private clean + dirty) of one process, from /proc/<pid>/smaps_rollup, in bytes."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                fields[name] = int(parts[0]) * 1024
    return Mem(fields["Rss"], fields["Pss"], fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0))


def memory_of(pids: Sequence[int]) -> Mem:
    total = ZERO
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, KeyError):
            total = total + process_memory(pid)
    return total


def ray_worker_pids(head: RayHead) -> list[int]:
    """Every ``ray::`` process under this head: the shards, but also idle workers (``ray::IDLE``) and Ray's own
    (``ray::DashboardAgent`` and the like). For CPU per operation use ``shard_pids`` (the shards by their ping) and
    ``server_cpu_groups``, which count the rest as "ray system"."""
    found = []
    try:
        children = psutil.Process(head.process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    for child in children:
        with contextlib.suppress(psutil.Error):
            cmd = child.cmdline()
            if cmd and cmd[0].startswith("ray::"):
                found.append(child.pid)
    return found


def cpu_seconds(processes: Sequence[psutil.Process]) -> float:
    """User + system CPU time of these processes (those that ended meanwhile count as 0)."""
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def ray_processes(head: RayHead) -> list[psutil.Process]:
    """The head's ``ray start`` process and every process under it (GCS, raylet, dashboard, agents, workers)."""
    try:
        top = psutil.Process(head.process.pid)
        return [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def shard_pids(base_url: str) -> dict[str, list[int]]:
    """The pids of the server's shard processes by kind (``user``, ``chat``), from every shard's ``ping``
    (``GET /api/v1/_test/shards`` and ``/_test/chat_shards``: the benchmark servers run with APP_ENV=test)."""
    found: dict[str, list[int]] = {}
    for kind, path in (("user", "/api/v1/_test/shards"), ("chat", "/api/v1/_test/chat_shards")):
        reply = httpx.get(base_url + path, timeout=30)
        reply.raise_for_status()
        found[kind] = sorted({int(ping["pid"]) for ping in reply.json()})
    return found


# Server CPU per operation is the sum of these groups of ``server_cpu_groups``; "ray system" (GCS, raylet,
# dashboard, idle workers: Ray's own upkeep, mostly independent of the load) is printed beside it.
SERVER_GROUPS = ("api workers", "UserShards", "ChatShards", "postgres", "redis")
# PostgreSQL's processes that serve every database (the postmaster's own title is its command line).
PG_SHARED = ("checkpointer", "background writer", "walwriter", "autovacuum launcher", "logical replication launcher")


def postgres_processes(database: str) -> list[psutil.Process]:
    """The PostgreSQL processes working for ``database``: its backends (and autovacuum workers), whose title names
    it, and the processes every database shares (postmaster, checkpointer, background writer, walwriter, ...).
    Backends of other databases (other work on this machine) are left out."""
    found = []
    for process in processes_named("postgres"):
        with contextlib.suppress(psutil.Error):
            title = " ".join(process.cmdline())
            shared = not title.startswith("postgres:") or title.rstrip().endswith(PG_SHARED)
            if shared or f" {database} " in f"{title} ":
                found.append(process)
    return found


class ProcessGroups:
    """Named groups of processes for CPU accounting. A group given as a function is listed anew at every
    ``snapshot`` (PostgreSQL backends come and go with the pools); a process born between two snapshots counts
    all its CPU, one that ended counts none of its last stretch."""

    def __init__(self, groups: dict[str, list[psutil.Process] | Callable[[], list[psutil.Process]]]) -> None:
        self.groups = groups

    def processes(self) -> dict[str, list[psutil.Process]]:
        return {name: group() if callable(group) else group for name, group in self.groups.items()}

    def snapshot(self) -> dict[str, dict[tuple[int, float], float]]:
        """Per group: (pid, start time) -> user + system CPU seconds."""
        out: dict[str, dict[tuple[int, float], float]] = {}
        for name, procs in self.processes().items():
            seen: dict[tuple[int, float], float] = {}
            for process in procs:
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    seen[(process.pid, process.create_time())] = times.user + times.system
            out[name] = seen
        return out

    @staticmethod
    def spent(
        before: dict[str, dict[tuple[int, float], float]], after: dict[str, dict[tuple[int, float], float]]
    ) -> dict[str, float]:
        """CPU seconds per group between two snapshots."""
        return {
            name: sum(cpu - before.get(name, {}).get(key, 0.0) for key, cpu in procs.items())
            for name, procs in after.items()
        }


def server_cpu_groups(server: Server, head: RayHead) -> ProcessGroups:
    """The server's processes for CPU accounting: the api workers, the UserShard and ChatShard processes (pids from
    their ping), postgres (the processes working for the server's database: ``postgres_processes``), every
    redis-server on the machine (shared with other work: an upper bound) and "ray system" (every other process
    under the Ray head)."""
    pids = shard_pids(server.base_url)
    shards = {pid for group in pids.values() for pid in group}
    database = server.env["DATABASE_URL"].rsplit("/", 1)[1]
    return ProcessGroups(
        {
            "api workers": _processes(server.worker_pids),
            "UserShards": _processes(pids["user"]),
            "ChatShards": _processes(pids["chat"]),
            "postgres": lambda: postgres_processes(database),
            "redis": processes_named("redis-server"),
            "ray system": [p for p in ray_processes(head) if p.pid not in shards],
        }
    )


class CpuMeter:
    """CPU seconds (user + system) each group of processes spent since the meter was made, and the wall time."""

    def __init__(self, groups: ProcessGroups) -> None:
        self.groups = groups
        self.before = groups.snapshot()
        self.wall = time.perf_counter()

    def spent(self) -> tuple[float, dict[str, float]]:
        wall = time.perf_counter() - self.wall
        return wall, ProcessGroups.spent(self.before, self.groups.snapshot())


def server_cpu(spent: dict[str, float]) -> float:
    """The headline server CPU of a ``CpuMeter.spent`` result: the ``SERVER_GROUPS`` summed (not "ray system")."""
    return sum(spent.get(name, 0.0) for name in SERVER_GROUPS)


def processes_named(*names: str) -> list[psutil.Process]:
    """Machine-wide services by process name (postgres, redis-server): read-only CPU accounting."""
    found = []
    for process in psutil.process_iter(["name"]):
        if process.info["name"] and process.info["name"].startswith(names):
            found.append(process)
    return found


def available_memory() -> int:
    return int(psutil.virtual_memory().available)


# ---------------------------------------------------------------- resources


@dataclass
class Server:
    base_url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    worker_pids: list[int]


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def raise_nofile() -> int:
    """Raise this process's open-files limit to its hard limit; returns the new soft limit."""
    _raise_nofile()
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _reexec_with_loopback_ray() -> None:
    """Restart this script once with ``loopback_env()`` in its environment, unless it is there already.

    Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, when it is imported (the scripts import it before this
    module). Without it this driver would swap 127.0.0.1 for the machine's address and dial the loopback-only
    head where it does not listen; ``server_env`` and every subprocess inherit it from here.
    """
    wanted = loopback_env()
    if all(os.environ.get(key) == value for key, value in wanted.items()):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(PYTHON, [PYTHON, *sys.orig_argv[1:]], {**os.environ, **wanted})  # noqa: S606 (our own argv)


class Bench:
    """One benchmark run's throwaway resources, removed in reverse order by ``close()`` (``with Bench(...)``)."""

    def __init__(self, name: str, smoke: bool = False) -> None:
        _reexec_with_loopback_ray()
        self.name = name
        self.smoke = smoke  # --smoke: fewer shards, shorter waits while taking things down (parse_args)
        self.run_id = uuid.uuid4().hex[:10]
        self.workdir = Path(tempfile.mkdtemp(prefix=f"i9bench-{name}-"))
        self.namespace = f"i9bench-{self.run_id}"
        self._cleanups: list[tuple[str, Callable[[], Any]]] = []
        self._failed = False
        os.chdir(REPO)  # Ray hands the driver's cwd to its workers' sys.path: make it the repository

    def __enter__(self) -> Bench:
        def on_term(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_term)
        say(f"# {command_line()}")
        say(f"# run {self.run_id}, workdir {self.workdir}")
        if self.smoke:
            say("# SMOKE SCALE (--smoke): this run proves the benchmark still runs; its figures are not measurements")
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._failed = exc_type is not None
        self.close()

    def defer(self, what: str, fn: Callable[[], Any]) -> None:
        self._cleanups.append((what, fn))

    def close(self) -> None:
        while self._cleanups:
            what, fn = self._cleanups.pop()
            try:
                fn()
            except BaseException as exc:  # keep cleaning up whatever else there is
                say(f"# cleanup of {what} failed: {exc!r}")
        if self._failed or os.environ.get("BENCH_KEEP"):
            say(f"# logs kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------ database, Redis, Ray

    def database(self) -> str:
        name = f"i9bench_{self.run_id}"
        dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
        self.defer("database", lambda: asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
        env = dict(os.environ, DATABASE_URL=dsn)
        subprocess.run([PYTHON, "-m", "storage.migrate"], check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
        return dsn

    def redis_prefix(self) -> str:
        prefix = f"i9bench:{self.run_id}:"

        def clean() -> None:
            # Twice, as tests/conftest.py does: a shard still winding down after the Ray head stopped may
            # recreate its fan-out queue in between (``ray_head`` waits for its shards to exit, so at smoke scale
            # a short pause is enough).
            delete_prefix(prefix)
            time.sleep(0.5 if self.smoke else 3)
            delete_prefix(prefix)

        self.defer("redis keys", clean)
        return prefix

    def ray_head(self, num_cpus: int = 2) -> RayHead:
        head = start_head(num_cpus=num_cpus, log_path=self.workdir / "ray-head.log")

        def stop() -> None:
            workers = _processes(ray_worker_pids(head))
            # `ray start --block` does not exit on SIGTERM: RayHead.stop SIGKILLs its process group after the
            # grace period. The worker processes (shards) are in groups of their own and exit once their raylet
            # is gone; at smoke scale the grace is short and the workers are killed at once.
            head.stop(timeout=1.0 if self.smoke else 5.0)
            if self.smoke:
                _kill(workers)
            _wait_gone(workers, 15.0)

        self.defer("ray session dir", lambda: _remove_session_dir(head))
        self.defer("ray head", stop)
        return head

    def ray_driver(self, head: RayHead) -> None:
        """Connect this process to ``head`` as a Ray driver (disconnected at the end)."""
        import ray

        saved = signal.getsignal(signal.SIGTERM)
        ray.init(address=head.address, namespace=self.namespace, log_to_driver=False, configure_logging=False)
        signal.signal(signal.SIGTERM, saved)
        self.defer("ray driver", ray.shutdown)

    def settings(self, database_url: str, redis_prefix: str, head: RayHead, **changes: Any) -> Settings:
        """Settings as the api would load them from the server environment below."""
        base = Settings(
            env="test",
            database_url=database_url,
            redis_url=REDIS_URL,
            redis_prefix=redis_prefix,
            ray_address=head.address,
            ray_namespace=self.namespace,
            jwt_secret=JWT_SECRET,
            mail_dir=str(self.workdir / "var" / "mail"),
            media_dir=str(self.workdir / "var" / "media"),
            var_dir=str(self.workdir / "var"),
            log_level="WARNING",
        )
        if self.smoke:  # as server_env: the driver's shard handles must be the server's
            base = replace(base, user_shards=SMOKE_USER_SHARDS, chat_shards=SMOKE_CHAT_SHARDS)
        return replace(base, **changes)

    # ------------------------------------------------------------ the api server

    def server_env(
        self, database_url: str, redis_prefix: str, head: RayHead, port: int, **extra: str
    ) -> dict[str, str]:
        """As tests/conftest.py ``_server_env``, with SMTP_URL unset: mail goes to files under VAR_DIR/mail. At smoke
        scale fewer shards and a short drain on SIGTERM (``extra`` still wins)."""
        env = dict(os.environ)
        env.pop("SMTP_URL", None)
        env.update(
            HOST="127.0.0.1",
            PORT=str(port),
            WORKERS="2",
            DATABASE_URL=database_url,
            REDIS_URL=REDIS_URL,
            REDIS_PREFIX=redis_prefix,
            **head.client_env(),
            RAY_NAMESPACE=self.namespace,
            JWT_SECRET=JWT_SECRET,
            TRUSTED_PROXIES="127.0.0.1/32",
            VAR_DIR=str(self.workdir / "var"),
            LOG_LEVEL="WARNING",
            APP_ENV="test",
            MAX_BODY_BYTES=str(64 * 1024),
            PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        )
        if self.smoke:
            env.update(USER_SHARDS=str(SMOKE_USER_SHARDS), CHAT_SHARDS=str(SMOKE_CHAT_SHARDS), DRAIN_S="1")
        env.update(extra)
        return env

    def server(
        self, database_url: str, redis_prefix: str, head: RayHead, extra: dict[str, str] | None = None
    ) -> Server:
        """``python -m api`` on a free port with ``server_env`` (plus ``extra``), ready on every worker."""
        port = free_port()
        env = self.server_env(database_url, redis_prefix, head, port, **(extra or {}))
        log_path = self.workdir / "server.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [PYTHON, "-m", "api"],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_raise_nofile,  # the server may hold as many sockets as the hard limit allows
            )
        self.defer("api server", lambda: stop_server(process))
        base_url = f"http://127.0.0.1:{port}"
        pids = wait_ready(base_url, process, int(env["WORKERS"]), log_path)
        return Server(base_url, env, process, log_path, sorted(pids))


def _remove_session_dir(head: RayHead) -> None:
    """The head's own /tmp/ray/session_<time>_<pid of `ray start`> directory, once the head is stopped."""
    if head.process.poll() is None:
        return
    found = re.search(r"(/tmp/ray/session_[0-9_-]+_(\d+))/", head.log_path.read_text(errors="replace"))
    if found and int(found.group(2)) == head.process.pid:
        shutil.rmtree(found.group(1), ignore_errors=True)


def _processes(pids: Sequence[int]) -> list[psutil.Process]:
    found = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            found.append(psutil.Process(pid))
    return found


def _kill(processes: Sequence[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()  # psutil checks that the pid is still this process


def _wait_gone(processes: Sequence[psutil.Process], timeout: float) -> None:
    """Until none of ``processes`` runs (a zombie counts as gone), at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while any(_running(process) for process in processes) and time.monotonic() < deadline:
        time.sleep(0.1)


def _running(process: psutil.Process) -> bool:
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def delete_prefix(prefix: str) -> int:
    client = sync_redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        return len(keys)
    finally:
        client.close()


def log_summary(log_path: Path, limit: int = 8) -> list[str]:
    """Warnings and errors in a server log (JSON lines), counted by message and exception."""
    counts: dict[str, int] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") not in ("warning", "error", "critical"):
            continue
        exc = str(entry.get("exc") or "").strip().splitlines()
        key = f"{entry['level']} {entry.get('logger')}: {entry.get('msg', '').strip()}"
        if exc:
            key += f" ({exc[-1]})"
        counts[key] = counts.get(key, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
    return [f"{n} x {key}" for key, n in ranked]


def wait_ready(base_url: str, process: subprocess.Popen[bytes], workers: int, log_path: Path) -> set[int]:
    """Poll /readyz (a new connection each time, so every worker gets asked) until ``workers`` pids answered
    (the ``X-Worker-Pid`` header of APP_ENV=test, which the benchmark servers run with)."""
    deadline = time.monotonic() + 120
    pids: set[int] = set()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(base_url + "/readyz", timeout=5)
            if response.status_code == 200:  # /readyz shows no internals; APP_ENV=test adds X-Worker-Pid
                pids.add(int(response.headers["X-Worker-Pid"]))
                if len(pids) >= workers:
                    return pids
        time.sleep(0.2)
    raise RuntimeError(f"server not ready in time:\n{log_path.read_text()[-4000:]}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


# ---------------------------------------------------------------- users


@dataclass(frozen=True)
class User:
    id: int
    username: str
    access_token: str


_CODE = re.compile(r"\b(\d{6})\b")


def _mail_code(mail_dir: Path, address: str) -> str | None:
    for path in sorted(mail_dir.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes())
        if str(message["To"]).lower() == address.lower():
            body = message.get_payload(decode=True)
            text = body.decode() if isinstance(body, bytes) else str(message.get_payload())
            match = _CODE.search(text)
            if match:
                return match.group(1)
    return None


async def signup(base_url: str, mail_dir: Path, username: str, ip: str = "10.9.0.1") -> User:
    """The real three-step signup; the code is read from the .eml the server wrote (SMTP_URL unset)."""
    address = f"{username}@example.com"
    headers = {"X-Forwarded-For": ip}
    async with httpx.AsyncClient(base_url=base_url, timeout=30, headers=headers) as http:
        started = await http.post("/api/v1/auth/signup", json={"email": address})
        started.raise_for_status()
        flow_id = started.json()["flow_id"]
        deadline = time.monotonic() + 15
        code = None
        while code is None:
            code = _mail_code(mail_dir, address)
            if code is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no mail for {address} in {mail_dir}")
                await asyncio.sleep(0.05)
        verified = await http.post("/api/v1/auth/signup/verify", json={"flow_id": flow_id, "code": code})
        verified.raise_for_status()
        body = {
            "flow_id": flow_id,
            "username": username,
            "name": username.title(),
            "password": "correct-Horse-9",
            "birthday": "2000-01-31",
        }
        done = await http.post("/api/v1/auth/signup/complete", json=body)
        done.raise_for_status()
        data = done.json()
    return User(int(data["user"]["id"]), username, data["tokens"]["access_token"])


def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + "/api/v1/ws"
