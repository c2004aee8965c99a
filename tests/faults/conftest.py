"""The outage tests' stack: a server (``python -m api``) and its shards on the session's Ray head, pointed at a
private PostgreSQL and a private Redis (tests/faults/deps.py) that the tests stop and start under load.

Everything is stopped at the end, also after a failure: the server, its shards (killed by name in their own Ray
namespace), the private PostgreSQL (its directory removed) and the private Redis.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from actors.runtime.cluster import RayHead, free_port
from tests.conftest import REPO, Server, _server_env, start_server, stop_server
from tests.faults.deps import PrivatePostgres, PrivateRedis
from tests.support import Api, Mailbox


@dataclass
class Stack:
    server: Server
    pg: PrivatePostgres
    redis: PrivateRedis
    database_url: str

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def log_lines(self, start: int = 0) -> list[str]:
        """The server's log lines from line ``start`` on."""
        return self.server.log_path.read_text(errors="replace").splitlines()[start:]


@dataclass
class ShardLogs:
    """What this stack's shard processes log (their stderr, in the Ray head's session directory), from a mark on."""

    files: list[Path]
    offsets: dict[Path, int] = field(default_factory=dict)

    @classmethod
    async def of(cls, head: RayHead, api: Api) -> ShardLogs:
        found = re.search(r"(/tmp/ray/session_[0-9_-]+_(\d+))/", head.log_path.read_text(errors="replace"))
        assert found, "the Ray head's log names no session directory"
        pids = []
        for path in ("/api/v1/_test/shards", "/api/v1/_test/chat_shards"):
            reply = await api.get(path)
            assert reply.status == 200, reply.body
            pids += [int(ping["pid"]) for ping in reply.body]
        logs = Path(found.group(1)) / "logs"
        files = [file for pid in pids for file in logs.glob(f"worker-*-{pid}.err")]
        assert len(files) == len(pids), (pids, files)
        return cls(files)

    def mark(self) -> None:
        self.offsets = {file: file.stat().st_size for file in self.files}

    def lines(self) -> dict[Path, list[str]]:
        """The lines each shard process logged since the mark."""
        out: dict[Path, list[str]] = {}
        for file in self.files:
            with open(file, "rb") as stream:
                stream.seek(self.offsets.get(file, 0))
                out[file] = stream.read().decode(errors="replace").splitlines()
        return out


def _retire_shards(namespace: str, server: dict[str, dict[str, str]]) -> None:
    """Kill the stack's shards by name (a server that failed to start may have made some)."""
    env = server.get("env")
    if env is None:
        return
    retire = (
        "import ray; from actors.runtime.topology import retire_stale_shards; "
        f"ray.init(namespace={namespace!r}, log_to_driver=False); retire_stale_shards({namespace!r}, '')"
    )
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, "-c", retire], env=env, cwd=REPO, timeout=60, capture_output=True, check=False)


@contextlib.contextmanager
def outage_stack(
    tag: str, ray_head: RayHead, mailbox: Mailbox, workdir: Path, run_id: str, **env: str
) -> Iterator[Stack]:
    namespace = f"i9{tag}-{run_id}-{uuid.uuid4().hex[:6]}"
    server: dict[str, dict[str, str]] = {}
    # Every step of the teardown runs even when one before it fails or is interrupted (a test's timeout): the
    # server first, then the private PostgreSQL and Redis, last the shards (slow, and only Ray's).
    with contextlib.ExitStack() as teardown:
        teardown.callback(_retire_shards, namespace, server)
        pg = PrivatePostgres()
        teardown.callback(pg.close)
        redis = PrivateRedis()
        teardown.callback(redis.close)
        pg.start()
        redis.start()
        database_url = pg.dsn(f"i9{tag}")
        port = free_port()
        server_env = _server_env(database_url, f"i9{tag}:", ray_head, mailbox, run_id, workdir, port)
        server_env.update(
            REDIS_URL=redis.url,
            RAY_NAMESPACE=namespace,
            RATE_LIMITS="write=100000/60,auth=1000/60",  # the load retries: rate limits are not under test here
            **env,
        )
        server["env"] = server_env
        subprocess.run(
            [sys.executable, "-m", "storage.migrate"], check=True, env=server_env, cwd=REPO, capture_output=True
        )
        log_path = workdir / f"{tag}-server.log"
        process = start_server(server_env, log_path)
        teardown.callback(stop_server, process)
        yield Stack(Server(f"http://127.0.0.1:{port}", server_env, process, log_path), pg, redis, database_url)
