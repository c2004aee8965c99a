"""Session fixtures: a throwaway database and Redis prefix, our own Ray head, an SMTP catcher, and a real
uvicorn (2 worker processes) serving the app over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis as sync_redis

from actors.runtime.cluster import RayHead, free_port, start_head
from tests.support import Api, Mailbox

REPO = Path(__file__).resolve().parent.parent
ADMIN_DSN = os.environ.get("TEST_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
TEST_JWT_SECRET = "test-secret-" + "x" * 40


@dataclass
class Server:
    base_url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("i9")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def database_url(run_id: str) -> Iterator[str]:
    name = f"i9test_{run_id}"
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    env = dict(os.environ, DATABASE_URL=dsn)
    # The migration CLI creates the database and applies every migration, as `make run` does.
    subprocess.run([sys.executable, "-m", "storage.migrate"], check=True, env=env, cwd=REPO)
    yield dsn
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def redis_prefix(run_id: str) -> Iterator[str]:
    prefix = f"i9test:{run_id}:"
    yield prefix
    client = sync_redis.Redis.from_url(REDIS_URL)
    # Twice: a shard still winding down after the Ray head stopped may recreate its fan-out queue in between.
    for attempt in range(2):
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        if attempt == 0:
            time.sleep(3)
    client.close()


@pytest.fixture(scope="session")
def ray_head(workdir: Path) -> Iterator[RayHead]:
    head = start_head(num_cpus=2, log_path=workdir / "ray-head.log", auth_token_path=workdir / "ray-token")
    yield head
    head.stop()


@pytest.fixture(scope="session")
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    box.start()
    yield box
    box.stop()


def _server_env(
    database_url: str, redis_prefix: str, ray_head: RayHead, mailbox: Mailbox, run_id: str, workdir: Path, port: int
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HOST="127.0.0.1",
        PORT=str(port),
        WORKERS="2",
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_URL,
        REDIS_PREFIX=redis_prefix,
        **ray_head.client_env(),
        RAY_NAMESPACE=f"i9test-{run_id}",
        SMTP_URL=mailbox.url,
        JWT_SECRET=TEST_JWT_SECRET,
        TRUSTED_PROXIES="127.0.0.1/32",
        VAR_DIR=str(workdir / "var"),
        LOG_LEVEL="INFO",
        APP_ENV="test",
        MAX_BODY_BYTES=str(64 * 1024),
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        FANOUT_BATCH="100",  # many small fan-out steps: a worker can be killed between two (tests/api/test_feed.py)
        RECS_REFRESH_S="1",  # trending is recomputed every second (tests/api/test_recommendations.py)
    )
    return env


def start_server(env: dict[str, str], log_path: Path, timeout: float = 90.0) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "api"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{env['PORT']}"
    deadline = time.monotonic() + timeout
    ready_pids: set[int] = set()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()[-4000:]}")
        try:
            # New connection each time so that both worker processes get asked. /readyz says ready or not, no
            # pid: the worker that answered is named by the test-only X-Worker-Pid header (APP_ENV=test).
            response = httpx.get(base + "/readyz", timeout=5)
            if response.status_code == 200:
                ready_pids.add(int(response.headers["x-worker-pid"]))
                if len(ready_pids) >= int(env.get("WORKERS", "1")):
                    return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"server not ready in {timeout}s:\n{log_path.read_text()[-4000:]}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(timeout=5)


@contextlib.contextmanager
def own_server(
    tag: str, redis_prefix: str, ray_head: RayHead, mailbox: Mailbox, run_id: str, workdir: Path, **env: str
) -> Iterator[Server]:
    """A server with settings of its own (``env``) in its own database, Redis prefix and Ray namespace, for the
    tests that need another configuration than the session server's; everything it made goes at the end."""
    name = f"i9{tag}_{run_id}"
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    namespace = f"i9{tag}-{run_id}"
    port = free_port()
    server_env = _server_env(dsn, redis_prefix + f"{tag}:", ray_head, mailbox, run_id, workdir, port)
    server_env.update(RAY_NAMESPACE=namespace, **env)
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    subprocess.run([sys.executable, "-m", "storage.migrate"], check=True, env=server_env, cwd=REPO, capture_output=True)
    log_path = workdir / f"{tag}-server.log"
    process = start_server(server_env, log_path)
    try:
        yield Server(f"http://127.0.0.1:{port}", server_env, process, log_path)
    finally:
        stop_server(process)
        retire = (
            "import ray; from actors.runtime.topology import retire_stale_shards; "
            f"ray.init(namespace={namespace!r}, log_to_driver=False); retire_stale_shards({namespace!r}, '')"
        )
        subprocess.run([sys.executable, "-c", retire], env=server_env, cwd=REPO, check=True, timeout=120)
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def server(
    database_url: str, redis_prefix: str, ray_head: RayHead, mailbox: Mailbox, run_id: str, workdir: Path
) -> Iterator[Server]:
    port = free_port()
    env = _server_env(database_url, redis_prefix, ray_head, mailbox, run_id, workdir, port)
    log_path = workdir / "server.log"
    process = start_server(env, log_path)
    yield Server(f"http://127.0.0.1:{port}", env, process, log_path)
    stop_server(process)


@pytest.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture
async def make_api(server: Server) -> AsyncIterator[Callable[..., Api]]:
    made: list[Api] = []

    def factory(fmt: str = "json", ip: str | None = None) -> Api:
        api = Api(server.base_url, fmt, ip)
        made.append(api)
        return api

    yield factory
    for api in made:
        await api.close()


@pytest.fixture
async def api(make_api: Callable[..., Api]) -> Api:
    return make_api("json")


@pytest.fixture(params=["json", "msgpack"])
async def any_api(request: pytest.FixtureRequest, make_api: Callable[..., Api]) -> Api:
    """The same test once in JSON and once in MessagePack."""
    return make_api(str(request.param))


@pytest.fixture
def register(mailbox: Mailbox) -> Callable[..., Any]:
    """Sign a user up through the real three-step flow; returns (body of /signup/complete, email, password)."""
    from tests.support import unique

    async def go(
        api: Api, username: str | None = None, password: str = "correct-Horse-9", **extra: Any
    ) -> dict[str, Any]:
        username = username or unique("user")
        email = f"{username}@example.com"
        started = await api.post("/api/v1/auth/signup", {"email": email})
        assert started.status == 202, started.body
        flow_id = started.body["flow_id"]
        code = await mailbox.code(email)
        verified = await api.post("/api/v1/auth/signup/verify", {"flow_id": flow_id, "code": code})
        assert verified.status == 200, verified.body
        body = {
            "flow_id": flow_id,
            "username": username,
            "name": username.title(),
            "password": password,
            "birthday": "2000-01-31",
            **extra,
        }
        done = await api.post("/api/v1/auth/signup/complete", body)
        assert done.status == 201, done.body
        api.token = done.body["tokens"]["access_token"]
        api.username = username
        api.user_id = done.body["user"]["id"]
        return {**done.body, "email": email, "password": password, "username": username}

    return go
