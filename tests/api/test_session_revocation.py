"""A revoked session ends everywhere at once: a reused refresh token (the theft signal) closes the session's
open sockets with 4401 as logout and password reset do, and logout revokes the session even when the shards
that hold the sockets cannot be reached (revoke in storage first; closing sockets is best effort after it)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from actors.runtime.cluster import RayHead, free_port
from tests.conftest import ADMIN_DSN, REPO, Server, _admin, _server_env, start_server, stop_server
from tests.support import Api, Mailbox, WsClient, assert_error, wait_until

AUTH = "/api/v1/auth"


async def test_a_reused_refresh_token_closes_the_sessions_open_socket_with_4401_at_once(
    server: Server, make_api: Callable[..., Api], register: Any
) -> None:
    api = make_api()
    user = await register(api)
    stolen = user["tokens"]
    other = await api.post(f"{AUTH}/login", {"login": user["username"], "password": user["password"]})
    assert other.status == 200, other.body
    victim_ws = await WsClient.connect(server.base_url, stolen["access_token"])
    bystander_ws = await WsClient.connect(server.base_url, other.body["tokens"]["access_token"])
    assert (await victim_ws.request("ping"))["ok"] and (await bystander_ws.request("ping"))["ok"]

    assert (await api.post(f"{AUTH}/refresh", {"refresh_token": stolen["refresh_token"]})).status == 200
    reused = await api.post(f"{AUTH}/refresh", {"refresh_token": stolen["refresh_token"]})
    assert assert_error(reused, 401, "unauthenticated")["details"]["reason"] == "refresh_reused"

    code, _reason = await asyncio.wait_for(victim_ws.closed, timeout=5)
    assert code == 4401
    # The other session's socket is untouched.
    assert (await bystander_ws.request("ping"))["ok"]
    await bystander_ws.close()


@dataclass
class Isolated:
    base_url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path


@pytest.fixture(scope="module")
def isolated(redis_prefix: str, ray_head: RayHead, mailbox: Mailbox, run_id: str, workdir: Path) -> Iterator[Isolated]:
    """A short-lived server of our own (database, Redis prefix, Ray namespace): its shards get killed."""
    name = f"i9revoke_{run_id}"
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    port = free_port()
    env = _server_env(dsn, redis_prefix + "revoke:", ray_head, mailbox, run_id, workdir, port)
    env.update(RAY_NAMESPACE=f"i9revoke-{run_id}", WORKERS="1", USER_SHARDS="1")
    subprocess.run([sys.executable, "-m", "storage.migrate"], check=True, env=env, cwd=REPO)
    log_path = workdir / "revoke-server.log"
    process = start_server(env, log_path)
    try:
        yield Isolated(f"http://127.0.0.1:{port}", env, process, log_path)
    finally:
        stop_server(process)
        _kill_shards(env)
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _kill_shards(env: dict[str, str]) -> None:
    """Kill every shard of the server's namespace for good (no restart): its Ray calls now fail."""
    namespace = env["RAY_NAMESPACE"]
    kill = (
        "import ray; from actors.runtime.topology import retire_stale_shards; "
        f"ray.init(namespace={namespace!r}, log_to_driver=False); print(retire_stale_shards({namespace!r}, ''))"
    )
    subprocess.run([sys.executable, "-c", kill], env=env, cwd=REPO, check=True, timeout=120, capture_output=True)


async def test_logout_with_the_shards_unreachable_still_revokes_the_session(
    isolated: Isolated, register: Any, mailbox: Mailbox
) -> None:
    api = Api(isolated.base_url)
    try:
        user = await register(api)
        tokens = user["tokens"]
        dsn = isolated.env["DATABASE_URL"]

        _kill_shards(isolated.env)

        async def shards_gone() -> bool:
            async with httpx.AsyncClient(base_url=isolated.base_url, timeout=10) as client:
                return (await client.get("/readyz")).status_code == 503

        await wait_until(shards_gone, timeout=20, interval=0.2)
        # A write that needs the user's shard fails: the shards really are out of reach.
        assert_error(await api.patch("/api/v1/me", {"bio": "unreachable"}), 503, "unavailable")

        assert (await api.post(f"{AUTH}/logout")).status == 204
        err = assert_error(await api.get("/api/v1/me"), 401, "unauthenticated")
        assert err["details"]["reason"] == "session_revoked"
        err = assert_error(await api.post(f"{AUTH}/refresh", {"refresh_token": tokens["refresh_token"]}), 401)
        assert err["details"]["reason"] == "session_revoked"
        conn = await asyncpg.connect(dsn)
        try:
            reason = await conn.fetchval(
                "SELECT revoked_reason FROM sessions WHERE user_id = $1", int(user["user"]["id"])
            )
        finally:
            await conn.close()
        assert reason == "logout"

        # The failed socket close is logged, not hidden.
        async def logged() -> bool:
            return "open sockets of revoked sessions not closed" in isolated.log_path.read_text()

        await wait_until(logged)
    finally:
        await api.close()
