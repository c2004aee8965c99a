"""Shard versions: a fingerprint of the code and settings a shard actor runs with (pure, no Ray import).

A detached shard outlives the api processes that created it and keeps the code and settings it was started
with. Its name therefore carries a fingerprint of both (``user-shard-<fingerprint>-<k>``): a deploy with new
code or new shard settings gets new shards under new names instead of silently reusing the old ones, and can
tell which named actors of its namespace belong to another version (``stale_shard_names``).

The fingerprint is a hash: no setting (``jwt_secret``, credentials in ``database_url``) ever appears in a name.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from storage.config import Settings

FINGERPRINT_LENGTH = 10
CODE_ROOT = Path(__file__).resolve().parent.parent
# The packages a shard actor runs: a change in any of their modules is a new shard version.
CODE_PACKAGES = ("actors", "storage")
# Settings that only the HTTP/WebSocket front door reads, or that differ between the processes of one
# deploy (each gateway has its own port and base URL): changing them must not replace the shards.
GATEWAY_ONLY_SETTINGS = frozenset(
    {
        "host",
        "port",
        "workers",
        "log_level",
        "public_base_url",
        "cors_origins",
        "ws_origins",
        "trusted_proxies",
        "max_body_bytes",
        "ray_address",  # how this process reaches the cluster, not what the shards do
        "drain_s",
        "http_keepalive_s",  # how long the front door keeps an idle connection
        "metrics_allow",  # who may read GET /metrics: the front door's business
    }
)
_SHARD_NAME = re.compile(rf"^(user|chat)-shard-(?:([0-9a-f]{{{FINGERPRINT_LENGTH}}})-)?(\d+)$")


@functools.cache
def code_version(root: Path = CODE_ROOT, packages: tuple[str, ...] = CODE_PACKAGES) -> str:
    """sha256 over every ``*.py`` of ``packages`` (path and bytes, sorted by path); computed once per process."""
    digest = hashlib.sha256()
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()


def shard_settings(settings: Settings) -> dict[str, Any]:
    """The settings a shard actor depends on: everything but the gateway-only ones."""
    return {key: value for key, value in settings.to_dict().items() if key not in GATEWAY_ONLY_SETTINGS}


def shard_fingerprint(settings: Settings, code: str | None = None) -> str:
    """Short hex hash of (code version, shard settings): equal for every process of one deploy."""
    digest = hashlib.sha256()
    digest.update((code if code is not None else code_version()).encode())
    digest.update(b"\0")
    digest.update(json.dumps(shard_settings(settings), sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()[:FINGERPRINT_LENGTH]


def is_shard_name(name: str) -> bool:
    """A user or chat shard name, of any version (including the unversioned ``user-shard-<k>`` of old)."""
    return _SHARD_NAME.match(name) is not None


def shard_name_fingerprint(name: str) -> str | None:
    """The fingerprint in a shard name; None for an unversioned name or a name that is not a shard's."""
    match = _SHARD_NAME.match(name)
    return match.group(2) if match else None


def stale_shard_names(names: list[str], fingerprint: str) -> list[str]:
    """The shard names among ``names`` that belong to another version than ``fingerprint`` (sorted)."""
    return sorted(n for n in names if is_shard_name(n) and shard_name_fingerprint(n) != fingerprint)
