"""Shard topology across deploys: the shard counts recorded in storage, and retiring shards of other versions.

* ``check_shard_count``: the first api process records USER_SHARDS and CHAT_SHARDS in ``cluster_config``;
  a process configured otherwise refuses to start (changing K re-maps every entity to another shard).
* ``retire_stale_shards``: after a deploy's own shards are up, the shard actors of the namespace that carry
  another fingerprint (actors/runtime/versioning.py: other code or other shard settings) are killed. Policy and its
  consequences for rolling deploys: docs/OPERATIONS.md, "Deploys and shard versions".
"""

from __future__ import annotations

import logging
from typing import Any, cast

import asyncpg
import ray

from actors.runtime.registry import chat_shard_name, user_shard_name
from actors.runtime.versioning import shard_fingerprint, stale_shard_names
from storage import cluster_config, db
from storage.config import Settings

log = logging.getLogger("i9lyfe.topology")

_ENV_NAMES = {"user_shards": "USER_SHARDS", "chat_shards": "CHAT_SHARDS"}


class ShardCountMismatch(RuntimeError):
    """This process's shard count differs from the one the database was set up with."""

    def __init__(self, key: str, configured: int, recorded: str) -> None:
        env = _ENV_NAMES[key]
        super().__init__(
            f"{env}={configured} but this database was set up with {env}={recorded}. Every entity lives in "
            f"shard hash(id) % {env}, so changing it re-maps every user to another shard; refusing to start. "
            f"To keep the current layout, set {env}={recorded}. To change it, stop every api process, run "
            f"`python -m storage.cluster_config set {key} {configured}` with this DATABASE_URL (or UPDATE "
            f"cluster_config SET value = '{configured}' WHERE key = '{key}'), then start them all with "
            f"{env}={configured}."
        )
        self.key = key
        self.configured = configured
        self.recorded = recorded


async def check_shard_count(pool: asyncpg.Pool, settings: Settings) -> None:
    """Record the shard counts on the first start; raise ``ShardCountMismatch`` when they differ from ours."""
    async with db.transaction(pool) as conn:
        for key in cluster_config.SHARD_COUNT_KEYS:
            configured = int(getattr(settings, key))
            recorded = await cluster_config.insert_value_if_absent(conn, key, str(configured))
            if recorded != str(configured):
                raise ShardCountMismatch(key, configured, recorded)


def named_actors(namespace: str) -> list[str]:
    """Names of the live named actors of ``namespace`` (from the GCS; works without the dashboard)."""
    entries = cast(list[dict[str, str]], ray.util.list_named_actors(all_namespaces=True))
    return sorted(e["name"] for e in entries if e["namespace"] == namespace)


def retire_stale_shards(namespace: str, fingerprint: str) -> list[str]:
    """Kill the shard actors of ``namespace`` whose name carries another fingerprint; return their names."""
    retired = []
    for name in stale_shard_names(named_actors(namespace), fingerprint):
        try:
            handle = ray.get_actor(name, namespace=namespace)
        except ValueError:
            continue  # another process of this deploy retired it first
        ray.kill(handle, no_restart=True)
        retired.append(name)
    if retired:
        log.warning(
            "retired shards of another version",
            extra={"fields": {"namespace": namespace, "fingerprint": fingerprint, "retired": retired}},
        )
    return retired


def describe_shards(settings: Settings) -> dict[str, Any]:
    """This process's shard fingerprint and names, and every named actor of its namespace (test route)."""
    fingerprint = shard_fingerprint(settings)
    return {
        "fingerprint": fingerprint,
        "user_shards": [user_shard_name(fingerprint, k) for k in range(settings.user_shards)],
        "chat_shards": [chat_shard_name(fingerprint, k) for k in range(settings.chat_shards)],
        "named_actors": named_actors(settings.ray_namespace),
    }
