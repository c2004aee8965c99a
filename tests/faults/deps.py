"""A private PostgreSQL and a private Redis for the outage tests: they are stopped and restarted on purpose, so they
must never be the shared instances of 127.0.0.1:5432 and :6379.

``PrivatePostgres``: ``initdb`` into a temporary directory (trust auth, 127.0.0.1 only, a free port), started and
stopped with ``pg_ctl`` (``stop("fast")``: every session is ended with ``admin_shutdown``, as in a restart);
stopped for good (and its directory removed) by ``close``.
``PrivateRedis``: ``redis-server`` on a free port with no persistence (no RDB, no AOF): a restart comes back empty.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis as sync_redis

from actors.runtime.cluster import free_port

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def _as_postgres_user() -> dict[str, object]:
    """initdb and postgres refuse to run as root: as root, run them as the ``postgres`` system user."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam("postgres")
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


class PrivatePostgres:
    """One PostgreSQL cluster of this test alone."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="i9pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self._as = _as_postgres_user()
        try:
            if self._as:
                os.chown(self.root, int(str(self._as["user"])), int(str(self._as["group"])))
            initdb = [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            self._run([*initdb, "--no-sync"])
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": "300",
            "shared_buffers": "32MB",
            "fsync": "off",  # a process kill keeps what reached the kernel; only a machine crash would lose it
            "full_page_writes": "off",
            "logging_collector": "off",
        }
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, cmd: list[str], timeout: float = 60) -> None:
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout, **self._as)  # type: ignore[call-overload]

    def _pg_ctl(self, *args: str, timeout: float = 60) -> None:
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args], timeout=timeout)

    def start(self) -> None:
        self._pg_ctl("start", "-w", "-t", "30", "-l", str(self.log_path))

    def stop(self, mode: str = "fast") -> None:
        """``fast``: every session is ended (its clients see ``admin_shutdown``) and the server shuts down."""
        self._pg_ctl("stop", "-w", "-t", "30", "-m", mode)

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.running:
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """One redis-server of this test alone, without persistence: every (re)start is empty."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="i9redis-"))
        self.log_path = self.root / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        cmd = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.root),
            "--logfile",
            str(self.log_path),
            "--protected-mode",
            "yes",
        ]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = sync_redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        try:
            deadline = time.monotonic() + 20
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited: {self.log_path.read_text()[-2000:]}")
                try:
                    if client.ping():
                        return
                except sync_redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not answer within 20 s")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """SIGKILL: gone at once, like a crashed or lost Redis (nothing is saved either way)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
