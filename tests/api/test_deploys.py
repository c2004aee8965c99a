"""Deploys: shards carry the version of the code and settings that made them, so a deploy with new shard
settings replaces the old shards instead of reusing them; a server configured with another shard count than
its database refuses to start and says how to change it.

These servers get their own database, Redis prefix and Ray namespace: they kill shards and record K, which
must never touch the session ``server`` fixture."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from actors.runtime.cluster import RayHead, free_port
from actors.runtime.versioning import is_shard_name, shard_name_fingerprint
from tests.conftest import ADMIN_DSN, REPO, _admin, _server_env, start_server, stop_server
from tests.support import Mailbox, wait_until

DEPLOY_SHARDS = 2


@dataclass
class Deploys:
    env: dict[str, str]
    workdir: Path
    ray_head: RayHead
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def server_env(self, **overrides: str) -> dict[str, str]:
        port = free_port()
        return {**self.env, "PORT": str(port), "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", **overrides}

    def start(self, label: str, **overrides: str) -> str:
        env = self.server_env(**overrides)
        self.processes.append(start_server(env, self.workdir / f"deploy-{label}.log"))
        return f"http://127.0.0.1:{env['PORT']}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "storage.cluster_config", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture(scope="module")
def deploys(redis_prefix: str, ray_head: RayHead, mailbox: Mailbox, run_id: str, workdir: Path) -> Iterator[Deploys]:
    name = f"i9deploy_{run_id}"
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    namespace = f"i9deploy-{run_id}"
    env = _server_env(dsn, redis_prefix + "deploy:", ray_head, mailbox, run_id, workdir, 0)
    env.update(RAY_NAMESPACE=namespace, WORKERS="1", USER_SHARDS=str(DEPLOY_SHARDS))
    subprocess.run([sys.executable, "-m", "storage.migrate"], check=True, env=env, cwd=REPO)
    deploys = Deploys(env, workdir, ray_head)
    yield deploys
    for process in deploys.processes:
        stop_server(process)
    # The shards are detached: retire every one of this namespace (no fingerprint matches "").
    retire = (
        "import ray; from actors.runtime.topology import retire_stale_shards; "
        f"ray.init(namespace={namespace!r}, log_to_driver=False); retire_stale_shards({namespace!r}, '')"
    )
    subprocess.run([sys.executable, "-c", retire], env=env, cwd=REPO, check=True, timeout=120)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _get(base_url: str, path: str) -> httpx.Response:
    return httpx.get(base_url + path, timeout=10)


def test_a_server_with_another_shard_count_than_its_database_refuses_to_start(deploys: Deploys) -> None:
    recorded = deploys.cli("set", "user_shards", str(DEPLOY_SHARDS))
    assert recorded.returncode == 0, recorded.stderr
    log_path = deploys.workdir / "deploy-other-k.log"
    # Two workers, as make run starts: the check runs once before uvicorn, so the server exits non-zero.
    env = deploys.server_env(USER_SHARDS="3", WORKERS="2")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "api"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deploys.processes.append(process)
    deadline = time.monotonic() + 60
    code = None
    while code is None:
        assert time.monotonic() < deadline, f"a server with USER_SHARDS=3 kept running:\n{log_path.read_text()}"
        with contextlib.suppress(httpx.HTTPError):
            ready = httpx.get(f"{env['PUBLIC_BASE_URL']}/readyz", timeout=2)
            pytest.fail(f"a server with USER_SHARDS=3 started (readyz {ready.status_code})")
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = process.wait(timeout=0.2)
    text = log_path.read_text()
    assert code != 0, text[-3000:]
    assert f"USER_SHARDS=3 but this database was set up with USER_SHARDS={DEPLOY_SHARDS}" in text
    assert "python -m storage.cluster_config set user_shards 3" in text
    assert f"user_shards={DEPLOY_SHARDS}" in deploys.cli("show").stdout  # nothing was changed


async def test_a_deploy_with_new_shard_settings_replaces_the_shards_of_the_old_one(deploys: Deploys) -> None:
    old_url = deploys.start("old", JWT_SECRET="old-secret-" + "o" * 40)
    old: dict[str, Any] = _get(old_url, "/api/v1/_test/shard_names").json()
    fingerprint = old["fingerprint"]
    assert old["user_shards"] == [f"user-shard-{fingerprint}-{k}" for k in range(DEPLOY_SHARDS)]
    assert set(old["user_shards"]) <= set(old["named_actors"])

    new_url = deploys.start("new", JWT_SECRET="new-secret-" + "n" * 40)
    new: dict[str, Any] = _get(new_url, "/api/v1/_test/shard_names").json()
    assert new["fingerprint"] != fingerprint
    assert new["user_shards"] == [f"user-shard-{new['fingerprint']}-{k}" for k in range(DEPLOY_SHARDS)]
    # Started after its own shards answered, the new deploy has retired every shard of the old version.
    shards = [n for n in new["named_actors"] if is_shard_name(n)]
    assert sorted(shards) == sorted(new["user_shards"] + new["chat_shards"])
    assert all(shard_name_fingerprint(n) == new["fingerprint"] for n in shards)
    assert not any("secret" in n for n in new["named_actors"])
    assert _get(new_url, "/readyz").status_code == 200
    pings = _get(new_url, "/api/v1/_test/shards").json()
    assert [p["index"] for p in pings] == list(range(DEPLOY_SHARDS))

    # A gateway of the old version left running fails its shard calls (the deploy replaces it anyway).
    async with httpx.AsyncClient(base_url=old_url, timeout=10) as client:

        async def old_gateway_unready() -> bool:
            return (await client.get("/readyz")).status_code == 503

        await wait_until(old_gateway_unready, timeout=30, interval=0.2)
